import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices, rotationQueue, settings } from "../db/schema.ts";
import { createLogger } from "../lib/logger.ts";
import type { Notifier } from "../lib/mqtt.ts";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createFleet, deviceRow, disconnectSimulations, expireNow, simulate, statesOf } from "./support/fleet.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";
import { enqueue } from "../lib/rotation/queue.ts";

/** Rotation end to end with the built-in identity provider, real PostgreSQL and real Mosquitto. */
const servers: TestServer[] = [];
after(async () => {
  await disconnectSimulations();
  for (const server of servers) await server.close();
});
async function server(env: Record<string, string> = {}) {
  const started = await startTestServer({ env });
  servers.push(started);
  return started;
}

describe("credential rotation (built-in provider)", () => {
  test("a fleet of 20 rotates one device at a time and every device ends OK with a working secret", async () => {
    const s = await server();
    const fleet = await createFleet(s, 20);
    const sims = fleet.map((device) => simulate(s, device));
    await Promise.all(sims.map((sim) => sim.ready));
    let maxPending = 0;
    const watcher = setInterval(async () => {
      const states = Object.values(await statesOf(s));
      maxPending = Math.max(maxPending, states.filter((state) => state === "PENDING").length);
    }, 20);

    const trigger = await s.admin("POST", "/api/rotation/trigger");
    assert.deepEqual(await trigger.json(), { queued_count: 20 });
    await waitFor("all 20 devices to be OK", async () => {
      const status = await (await s.admin("GET", "/api/rotation/status")).json();
      return status.counts_by_state.OK === 20 && status;
    }, 60_000);
    clearInterval(watcher);
    // The row turns OK before the device has read the answer that completed it.
    await Promise.all(sims.map((sim) => sim.settled()));

    assert.equal(maxPending, 1, "never more than one device PENDING");
    for (const [index, sim] of sims.entries()) {
      assert.equal(sim.rotations, 1);
      assert.notEqual(sim.secret, fleet[index]!.secret, "the secret changed");
      assert.equal((await sim.tokenFor()).ok, true, "the device's new secret works");
      assert.equal((await sim.tokenFor(fleet[index]!.secret)).ok, false, "the old secret no longer works");
      const row = await deviceRow(s, fleet[index]!.id);
      assert.ok(row.lastRotationCompletedAt);
      assert.equal(row.previousSecretEncrypted, null, "the cached old secret is cleared");
    }
    const status = await (await s.admin("GET", "/api/rotation/status")).json();
    assert.equal(status.pending_device_id, null);
    assert.ok(status.last_rotation_completed_at);
    await Promise.all(sims.map((sim) => sim.stop()));
  });

  test("broker down at the notice: the device stays QUEUED and no secret changes", async () => {
    const s = await server({ MQTT_URL: "mqtt://127.0.0.1:1", MQTT_PUBLISH_TIMEOUT_MS: "200" });
    const [device] = await createFleet(s, 1);
    const rotate = await s.admin("POST", `/api/devices/${device!.id}/rotate`);
    assert.deepEqual(await rotate.json(), { status: "queued" });
    const row = await deviceRow(s, device!.id);
    assert.equal(row.rotationState, "QUEUED");
    assert.equal(row.previousSecretEncrypted, null);
    assert.equal(await s.services.identity.getSecret(device!.clientId), device!.secret);
    const summary = await s.services.rotation.runCycle();
    assert.equal(summary.started, null);
    assert.deepEqual(summary.errors, [`device ${device!.key} is due but was not started: the MQTT broker is not connected; it stays QUEUED`]);
    assert.equal((await deviceRow(s, device!.id)).rotationState, "QUEUED");
  });

  test("a notice the broker does not acknowledge puts the device back to QUEUED, also a TIMEOUT retry", async () => {
    // A broker that is connected but never acknowledges (the PUBACK timeout path).
    const refusing: Notifier = { state: () => "connected", waitUntilConnected: async () => true, publish: async () => false, close: async () => {} };
    const s = await startTestServer({ overrides: { notifier: refusing } });
    servers.push(s);
    const [queued, retry] = await createFleet(s, 2);
    await s.services.database.db.update(devices).set({ rotationState: "TIMEOUT", nextRetryAt: new Date(Date.now() - 1000) }).where(eq(devices.id, retry!.id));
    await s.admin("POST", `/api/devices/${queued!.id}/rotate`);
    assert.equal((await deviceRow(s, queued!.id)).rotationState, "QUEUED");
    await s.services.database.db.delete(rotationQueue).where(eq(rotationQueue.deviceId, queued!.id)); // out of the way of the retry
    const summary = await s.services.rotation.runCycle();
    assert.equal(summary.started, null);
    assert.match(summary.errors.join(), new RegExp(`device ${retry!.key} was not started: the broker did not acknowledge its rotation notice`));
    const row = await deviceRow(s, retry!.id);
    assert.equal(row.rotationState, "QUEUED");
    assert.equal(row.previousSecretEncrypted, null);
    assert.equal(await s.services.identity.getSecret(retry!.clientId), retry!.secret, "no secret changed");
  });

  test("a PUBACK that comes too late for a device already fetching its secret counts as started", async () => {
    let s: TestServer | undefined;
    // The device got the notice and began fetching (its old secret is stored) before the broker's PUBACK arrived.
    const late: Notifier = {
      state: () => "connected",
      waitUntilConnected: async () => true,
      publish: async () => {
        await s!.services.database.db.update(devices).set({ previousSecretEncrypted: "stored" }).where(eq(devices.rotationState, "PENDING"));
        return false;
      },
      close: async () => {},
    };
    s = await startTestServer({ overrides: { notifier: late } });
    servers.push(s);
    const [device] = await createFleet(s, 1);
    await enqueue(s.services.database.db, undefined);
    const summary = await s.services.rotation.runCycle();
    assert.equal(summary.started, device!.key);
    assert.deepEqual(summary.errors, []);
    assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING");
  });

  test("an offline device times out and keeps its working secret; the fleet goes on", async () => {
    const s = await server();
    const [offline, online] = await createFleet(s, 2);
    const sim = simulate(s, online!);
    await sim.ready;
    assert.deepEqual(await (await s.admin("POST", `/api/devices/${offline!.id}/rotate`)).json(), { status: "queued" });
    assert.equal((await deviceRow(s, offline!.id)).rotationState, "PENDING", "this device starts at once");
    assert.deepEqual(await (await s.admin("POST", `/api/devices/${offline!.id}/rotate`)).json(), { status: "already_pending" });
    await s.admin("POST", `/api/devices/${online!.id}/rotate`);
    assert.equal((await deviceRow(s, online!.id)).rotationState, "QUEUED", "waits while another is pending");

    await expireNow(s, offline!.id);
    const summary = await s.services.rotation.runCycle();
    assert.equal(summary.timed_out, 1);
    const row = await deviceRow(s, offline!.id);
    assert.equal(row.rotationState, "TIMEOUT");
    assert.match(row.rotationError!, /did not fetch/);
    assert.ok(row.nextRetryAt! > new Date(), "retried later, with back-off");
    const device = simulate(s, offline!, "offline");
    assert.equal((await device.tokenFor()).ok, true, "its secret still works");
    await waitFor("the other device to rotate", async () => (await deviceRow(s, online!.id)).rotationState === "OK");

    const dashboard = await (await s.admin("GET", "/api/rotation/dashboard")).json();
    assert.deepEqual(dashboard.critical.map((r: { id: number }) => r.id), [offline!.id], "never rotated → critical");
    assert.equal(dashboard.counts.healthy, 1);
    await sim.stop();
  });

  test("provisioning response lost: TIMEOUT unconfirmed, both secrets work, the retry hands out the same new secret", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const sim = simulate(s, device!, "lose-provisioning-response");
    await sim.ready;
    await s.admin("POST", `/api/devices/${device!.id}/rotate`);
    await waitFor("the new secret to be issued", async () => (await deviceRow(s, device!.id)).newSecretIssuedAt);
    const issued = await s.services.identity.getSecret(device!.clientId);
    assert.notEqual(issued, device!.secret, "a new secret was issued");
    await expireNow(s, device!.id);
    await s.services.rotation.runCycle();
    const row = await deviceRow(s, device!.id);
    assert.equal(row.rotationState, "TIMEOUT");
    assert.equal(row.rotationUnconfirmed, true);
    assert.match(row.rotationError!, /may hold either secret/);
    assert.equal((await sim.tokenFor(device!.secret)).ok, true, "the device's old secret still works");
    assert.equal((await sim.tokenFor(issued)).ok, true, "and so does the new one it may hold");

    const retry = await s.admin("POST", `/api/devices/${device!.id}/rotate`);
    assert.deepEqual(await retry.json(), { status: "queued" });
    const oldToken = (await sim.tokenFor(device!.secret)).token!;
    const again = await (await fetch(`${s.url}/iot/provisioning`, { headers: { authorization: `Bearer ${oldToken}` } })).json();
    assert.equal(again.client_secret, issued, "no second secret while the first is unconfirmed");
    const newToken = (await sim.tokenFor(issued)).token!;
    await (await fetch(`${s.url}/iot/firmware-version`, { headers: { authorization: `Bearer ${newToken}` } })).body?.cancel();
    const done = await deviceRow(s, device!.id);
    assert.equal(done.rotationState, "OK", "any request with the new secret completes the rotation");
    assert.equal(done.rotationUnconfirmed, false);
    assert.equal((await sim.tokenFor(device!.secret)).ok, false, "the old secret is retired");
    await sim.stop();
  });

  test("a repeated provisioning call returns the same new secret; a token from the old secret never completes", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const sim = simulate(s, device!, "offline");
    const oldToken = (await sim.tokenFor()).token!;
    await s.admin("POST", `/api/devices/${device!.id}/rotate`);
    const fetchPackage = async (token: string, path = "/iot/provisioning") => {
      const response = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(response.headers.get("cache-control"), "no-store", `${path}: a secret is never cached`);
      return (await response.json()).client_secret as string;
    };
    const first = await fetchPackage(oldToken);
    const second = await fetchPackage(oldToken);
    assert.equal(second, first, "no second regeneration");
    assert.equal(await fetchPackage(oldToken, "/api/iot/provisioning"), first, "the /api/iot alias is the same route");
    assert.notEqual(first, device!.secret);

    const config = await fetch(`${s.url}/iot/config`, { headers: { authorization: `Bearer ${oldToken}` } });
    assert.equal(config.status, 200, "the old token still reads the config");
    assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING", "but does not complete the rotation");

    const newToken = (await sim.tokenFor(first)).token!;
    await (await fetch(`${s.url}/iot/config`, { headers: { authorization: `Bearer ${newToken}` } })).body?.cancel();
    const row = await deviceRow(s, device!.id);
    assert.equal(row.rotationState, "OK");
    assert.ok(row.secretCreatedAt! > new Date(Date.now() - 60_000));
  });

  test("each transition is logged with the device key and the request id, never a secret", async () => {
    const lines: string[] = [];
    const s = await startTestServer({ overrides: { logger: createLogger("info", {}, (line) => lines.push(line)) } });
    servers.push(s);
    const [device] = await createFleet(s, 1);
    const sim = simulate(s, device!, "offline");
    const rotate = await fetch(`${s.url}/api/devices/${device!.id}/rotate`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "x-request-id": "rotate-req-1" },
    });
    assert.equal(rotate.status, 200);
    const token = (await sim.tokenFor()).token!;
    const provisioning = await fetch(`${s.url}/iot/provisioning`, { headers: { authorization: `Bearer ${token}`, "x-request-id": "prov-req-1" } });
    const { client_secret: issued } = await provisioning.json();

    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const started = logged.find((line) => line.message === "Rotation started");
    assert.equal(started?.request_id, "rotate-req-1");
    assert.equal(started?.device_key, device!.key);
    const issuedLine = logged.find((line) => line.message === "New secret issued");
    assert.equal(issuedLine?.request_id, "prov-req-1");
    for (const line of lines) {
      assert.ok(!line.includes(device!.secret) && !line.includes(issued), `no secret in: ${line}`);
    }
  });

  test("outside a rotation the provisioning call returns the current secret unchanged", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const sim = simulate(s, device!, "offline");
    const token = (await sim.tokenFor()).token!;
    const body = await (await fetch(`${s.url}/iot/provisioning`, { headers: { authorization: `Bearer ${token}` } })).json();
    assert.equal(body.client_secret, device!.secret);
    assert.equal((await deviceRow(s, device!.id)).previousSecretEncrypted, null);
  });

  test("the schedule: the first run records a baseline, a passed occurrence queues every OK device", async () => {
    const s = await server({ ROTATION_CRON: "0 * * * *", MQTT_URL: "mqtt://127.0.0.1:1", MQTT_PUBLISH_TIMEOUT_MS: "100" });
    const fleet = await createFleet(s, 3);
    const first = await s.services.rotation.runCycle();
    assert.equal(first.baseline_recorded, true);
    assert.equal(first.queued, 0, "installing does not rotate the fleet");
    const second = await s.services.rotation.runCycle();
    assert.equal(second.queued, 0, "no occurrence has passed since");
    await s.services.database.db.update(settings).set({ value: new Date(Date.now() - 2 * 3_600_000).toISOString() }).where(eq(settings.key, "rotation.schedule_baseline"));
    const due = await s.services.rotation.runCycle();
    assert.equal(due.queued, 3);
    assert.deepEqual(Object.values(await statesOf(s)).sort(), fleet.map(() => "QUEUED"));
    const status = await (await s.admin("GET", "/api/rotation/status")).json();
    assert.ok(new Date(status.next_scheduled_rotation) > new Date());
  });

  test("jobs and triggers racing from several processes never make two devices PENDING", async () => {
    const s = await server({ MQTT_PUBLISH_TIMEOUT_MS: "1000" });
    await createFleet(s, 6);
    const others = [await startTestServer({ databaseUrl: s.databaseUrl }), await startTestServer({ databaseUrl: s.databaseUrl })];
    try {
      await s.admin("POST", "/api/rotation/trigger");
      for (let round = 0; round < 5; round++) {
        await Promise.all(
          [s, ...others].flatMap((instance) => [instance.services.rotation.runCycle(), instance.services.rotation.runCycle(), instance.services.rotation.engine.startNext()]),
        );
        const pending = Object.values(await statesOf(s)).filter((state) => state === "PENDING");
        assert.equal(pending.length, 1, `round ${round}`);
        // Let the pending device time out so the next round has to start another one.
        const [row] = await s.services.database.db.select().from(devices).where(eq(devices.rotationState, "PENDING"));
        await expireNow(s, row!.id);
      }
    } finally {
      for (const other of others) await other.stop();
    }
  });
});
