import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { createFleet } from "./support/fleet.ts";
import { bareEnv, type Child, runEntry } from "./support/process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

/** `node dist/cli.js rotation-job` as the Kubernetes CronJob runs it: a real process, one cycle, then exit. */
describe("rotation-job command", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());
  beforeEach(async () => {
    await server.services.database.db.delete(devices);
  });

  // Logs on, so a log line on stdout would show.
  const job = (env: Record<string, string> = {}) =>
    runEntry("cli.ts", ["rotation-job"], { cwd: server.env.DATA_DIR!, env: bareEnv({ ...server.env, LOG_LEVEL: "info", ...env }) });

  /** stdout is exactly one line, the JSON summary: a script or the CronJob's log reader gets nothing else there. */
  const summaryOf = (child: Child) => {
    assert.match(child.stdout(), /^[^\n]+\n$/, `one line on stdout:\n${child.stdout()}`);
    return JSON.parse(child.stdout()).rotation_job;
  };

  /** stderr ends with the one-line reason; every line before it is a JSON log line. */
  const reasonOf = (child: Child) => {
    const lines = child.stderr().trimEnd().split("\n");
    const reason = lines.pop()!;
    assert.match(reason, /^error: /, `the reason is the last line on stderr:\n${child.stderr()}`);
    for (const line of lines) assert.ok(JSON.parse(line).level, `a log line: ${line}`);
    return reason;
  };

  test("the first run records the baseline; two jobs at once start exactly one device and both exit 0", async () => {
    await createFleet(server, 3);
    const first = job();
    assert.equal(await first.exited(), 0, first.stderr());
    assert.equal(summaryOf(first).baseline_recorded, true);

    await server.services.database.db.update(devices).set({ rotationState: "QUEUED" });
    const [a, b] = [job(), job()];
    assert.deepEqual(await Promise.all([a.exited(), b.exited()]), [0, 0], a.stderr() + b.stderr());
    const started = [summaryOf(a).started, summaryOf(b).started].filter(Boolean);
    assert.equal(started.length, 1, "only one of them started a device");
    const pending = await server.services.database.db.select().from(devices).where(eq(devices.rotationState, "PENDING"));
    assert.equal(pending.length, 1);
    assert.equal(summaryOf(a).pending, pending[0]!.key);
    assert.ok(a.stderr().includes('"message":"MQTT connected"'), "logs go to stderr");
  });

  test("a failure before the cycle exits 1 with a one-line reason, no summary and no secret", async () => {
    const failing = job({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/nothing", KEYCLOAK_ADMIN_CLIENT_SECRET: "do-not-print-me" });
    assert.equal(await failing.exited(), 1);
    assert.equal(failing.stdout(), "");
    reasonOf(failing);
    assert.ok(!failing.stderr().includes("do-not-print-me"));
  });

  test("an invalid configuration is one line naming every problem", async () => {
    const invalid = job({ PORT: "99999", ROTATION_TIMEZONE: "Mars/Olympus" });
    assert.equal(await invalid.exited(), 1);
    assert.equal(invalid.stdout(), "");
    assert.match(reasonOf(invalid), /^error: invalid configuration: PORT: .*; ROTATION_TIMEZONE: /);
  });
});
