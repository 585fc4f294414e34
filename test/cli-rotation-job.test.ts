import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { createFleet } from "./support/fleet.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

/** `node dist/cli.js rotation-job` as the Kubernetes CronJob runs it: a real process, one cycle, then exit. */
describe("rotation-job command", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  const job = (env: Record<string, string> = {}) => runEntry("cli.ts", ["rotation-job"], { cwd: server.env.DATA_DIR!, env: bareEnv({ ...server.env, ...env }) });
  const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1)!).rotation_job;

  test("the first run records the baseline; two jobs at once start exactly one device and both exit 0", async () => {
    await createFleet(server, 3);
    const first = job();
    assert.equal(await first.exited(), 0, first.stderr());
    assert.equal(summaryOf(first.stdout()).baseline_recorded, true);

    await server.services.database.db.update(devices).set({ rotationState: "QUEUED" });
    const [a, b] = [job(), job()];
    assert.deepEqual(await Promise.all([a.exited(), b.exited()]), [0, 0], a.stderr() + b.stderr());
    const started = [summaryOf(a.stdout()).started, summaryOf(b.stdout()).started].filter(Boolean);
    assert.equal(started.length, 1, "only one of them started a device");
    const pending = await server.services.database.db.select().from(devices).where(eq(devices.rotationState, "PENDING"));
    assert.equal(pending.length, 1);
    assert.equal(summaryOf(a.stdout()).pending, pending[0]!.key);
  });

  test("a failure exits 1 with a one-line reason and no secret", async () => {
    const failing = job({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/nothing", KEYCLOAK_ADMIN_CLIENT_SECRET: "do-not-print-me" });
    assert.equal(await failing.exited(), 1);
    const lines = failing.stderr().trim().split("\n");
    assert.equal(lines.length, 1, failing.stderr());
    assert.match(lines[0]!, /^error: /);
    assert.ok(!failing.stderr().includes("do-not-print-me") && !failing.stdout().includes("do-not-print-me"));
  });
});
