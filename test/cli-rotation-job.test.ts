import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices, settings } from "../db/schema.ts";
import { createFleet, deviceRow } from "./support/fleet.ts";
import { bareEnv, type Child, runEntry } from "./support/process.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { enqueue } from "../lib/rotation/queue.ts";

const CLOSED_PORT = "127.0.0.1:1";

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

    await enqueue(server.services.database.db, undefined);
    const [a, b] = [job(), job()];
    assert.deepEqual(await Promise.all([a.exited(), b.exited()]), [0, 0], a.stderr() + b.stderr());
    const started = [summaryOf(a).started, summaryOf(b).started].filter(Boolean);
    assert.equal(started.length, 1, "only one of them started a device");
    const pending = await server.services.database.db.select().from(devices).where(eq(devices.rotationState, "PENDING"));
    assert.equal(pending.length, 1);
    assert.equal(summaryOf(a).pending, pending[0]!.key);
    assert.ok(a.stderr().includes('"message":"MQTT connected"'), "logs go to stderr");
  });

  test("broker down: exit 0 while nothing is due, exit 1 once a device is due and cannot start", async () => {
    const [device] = await createFleet(server, 1);
    const brokerDown = { MQTT_URL: `mqtt://${CLOSED_PORT}`, MQTT_PUBLISH_TIMEOUT_MS: "300" };
    const idle = job(brokerDown);
    assert.equal(await idle.exited(), 0, idle.stderr());
    assert.deepEqual(summaryOf(idle).errors, []);

    await enqueue(server.services.database.db, undefined);
    const blocked = job(brokerDown);
    assert.equal(await blocked.exited(), 1);
    const summary = summaryOf(blocked);
    assert.equal(summary.started, null);
    assert.equal(summary.errors.length, 1);
    assert.match(reasonOf(blocked), new RegExp(`device ${device!.key} is due but was not started: the MQTT broker is not connected`));
    assert.equal((await deviceRow(server, device!.id)).rotationState, "QUEUED", "it waits in the queue");
  });

  test("identity provider down at a timeout: exit 1 names the device left PENDING; the summary shows the work done", async () => {
    const [unrestored, other] = await createFleet(server, 2);
    const db = server.services.database.db;
    // A new secret was issued to this device, so its timeout must restore the old secret in the identity provider.
    await db
      .update(devices)
      .set({
        rotationState: "PENDING",
        rotationStartedAt: new Date(Date.now() - 3_600_000),
        previousSecretEncrypted: server.services.secretBox.encrypt(unrestored!.secret),
        newSecretIssuedAt: new Date(Date.now() - 3_000_000),
      })
      .where(eq(devices.id, unrestored!.id));
    // A scheduled rotation has come due since the last run: queueing the fleet needs no identity provider.
    await db.update(settings).set({ value: new Date(Date.now() - 60 * 86_400_000).toISOString() }).where(eq(settings.key, "rotation.schedule_baseline"));

    const keycloakDown = job({
      KEYCLOAK_BASE_URL: `http://${CLOSED_PORT}`,
      KEYCLOAK_REALM: "iotsupport",
      KEYCLOAK_ADMIN_CLIENT_ID: "iot-backend",
      KEYCLOAK_ADMIN_CLIENT_SECRET: "do-not-print-me",
    });
    assert.equal(await keycloakDown.exited(), 1);
    const summary = summaryOf(keycloakDown);
    assert.equal(summary.queued, 1, "the scheduled queueing was done");
    assert.equal(summary.timed_out, 0);
    assert.equal(summary.errors.length, 1);
    assert.match(reasonOf(keycloakDown), new RegExp(`device ${unrestored!.key}: could not restore its previous secret \\(Keycloak is unreachable`));
    assert.ok(!keycloakDown.stderr().includes("do-not-print-me") && !keycloakDown.stdout().includes("do-not-print-me"));
    assert.equal((await deviceRow(server, unrestored!.id)).rotationState, "PENDING", "kept for the next run to retry");
    assert.equal((await deviceRow(server, other!.id)).rotationState, "QUEUED");
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
