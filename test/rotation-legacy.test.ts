import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { builtinClients, devices } from "../db/schema.ts";
import { clientCredentialsToken } from "./support/keycloak.ts";
import { createFleet, deviceRow, endGrace, expireNow, legacyDevice, retryNow } from "./support/fleet.ts";
import type { LegacyDevice } from "./support/legacy-device.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Issue 11: devices with the deployed firmware (CONTRACT §10: one secret, restart right after storing the package,
 * never read X-Rotation) through every fault that used to lock them out, with the built-in provider, real PostgreSQL
 * and Mosquitto. Each ends rotated (OK, the old secret retired) and authenticating, with no token ever refused.
 */
const servers: TestServer[] = [];
const devicesToStop: LegacyDevice[] = [];
after(async () => {
  for (const device of devicesToStop) await device.stop();
  for (const server of servers.reverse()) await server.close();
});
async function server(options: { databaseUrl?: string; port?: number } = {}) {
  const started = await startTestServer({ ...options, env: { MQTT_LEGACY_TOPICS: "true" } });
  servers.push(started);
  return started;
}
type FleetDevice = Awaited<ReturnType<typeof createFleet>>[number];

async function bootedLegacyDevice(s: TestServer, device: FleetDevice) {
  const legacy = legacyDevice(s, device);
  devicesToStop.push(legacy);
  await legacy.untilRunning();
  return legacy;
}

const rotate = async (s: TestServer, device: FleetDevice) => assert.equal((await s.admin("POST", `/api/devices/${device.id}/rotate`)).status, 200);
const canAuthenticate = async (s: TestServer, clientId: string, secret: string) => (await clientCredentialsToken(s.services.identity.tokenUrl, clientId, secret)).ok;
const newSecretIssued = (s: TestServer, device: FleetDevice) => waitFor("the new secret to be issued", async () => (await deviceRow(s, device.id)).newSecretIssuedAt);

/** Runs rotation cycles (timeouts and retries made due at once) until the device is OK. */
async function cycleUntilRotated(s: TestServer, device: FleetDevice) {
  await waitFor(`device ${device.key} to be rotated`, async () => {
    if ((await deviceRow(s, device.id)).rotationState === "OK") return true;
    await expireNow(s);
    await retryNow(s);
    await s.services.rotation.runCycle();
    return false;
  }, 30_000, 300);
}

async function assertUnconfirmedTimeout(s: TestServer, device: FleetDevice) {
  const row = await deviceRow(s, device.id);
  assert.equal(row.rotationState, "TIMEOUT");
  assert.equal(row.rotationUnconfirmed, true, "marked unconfirmed");
  assert.ok(row.newSecretIssuedAt, "the issued secret is remembered");
  assert.equal(await canAuthenticate(s, device.clientId, device.secret), true, "the old secret still works");
  assert.equal(await canAuthenticate(s, device.clientId, await s.services.identity.getSecret(device.clientId)), true, "the new secret works");
}

async function assertRotated(s: TestServer, device: FleetDevice, legacy: LegacyDevice) {
  const row = await deviceRow(s, device.id);
  assert.equal(row.rotationState, "OK");
  assert.equal(row.rotationUnconfirmed, false);
  assert.equal(row.newSecretIssuedAt, null);
  assert.notEqual(legacy.secret, device.secret, "the device holds a new secret");
  assert.equal((await legacy.freshToken()).ok, true, "the device authenticates");
  await waitFor("the previous secret to be retired", async () => !(await canAuthenticate(s, device.clientId, device.secret)));
  assert.equal(legacy.lockouts, 0, "no token of the device was ever refused");
}

describe("rotation with devices running the deployed firmware (built-in provider)", () => {
  test("a legacy device rotates at once; it never reads X-Rotation", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(s, device!);
    await rotate(s, device!);
    await waitFor("the rotation to complete", async () => (await deviceRow(s, device!.id)).rotationState === "OK");
    assert.equal(legacy.restarts, 1);
    await assertRotated(s, device!, legacy);
  });

  test("WiFi down after its restart for longer than the timeout: TIMEOUT unconfirmed, then completes when it returns", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(s, device!);
    legacy.faults.wifiDownAtNextRestart = true;
    await rotate(s, device!);
    await newSecretIssued(s, device!);
    await waitFor("the device to restart", async () => legacy.restarts === 1);
    await expireNow(s, device!.id);
    assert.equal((await s.services.rotation.runCycle()).timed_out, 1);
    await assertUnconfirmedTimeout(s, device!);
    assert.equal(legacy.secret, await s.services.identity.getSecret(device!.clientId), "it holds only the new secret");

    legacy.wifiUp();
    await legacy.untilRunning();
    await assertRotated(s, device!, legacy);
    assert.equal((await deviceRow(s, device!.id)).lastRotationCompletedAt !== null, true);
  });

  test("backend down during its restart: the timeout passes meanwhile; it completes once the backend is back", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(s, device!);
    legacy.faults.atNextRestart = () => s.stop();
    await rotate(s, device!);
    await waitFor("the device to restart against a stopped backend", async () => legacy.restarts === 1 && !legacy.running);

    const job = await server({ databaseUrl: s.databaseUrl });
    await expireNow(job, device!.id);
    assert.equal((await job.services.rotation.runCycle()).timed_out, 1);
    await assertUnconfirmedTimeout(job, device!);
    await job.stop();

    const restarted = await server({ databaseUrl: s.databaseUrl, port: Number(new URL(s.url).port) });
    await legacy.untilRunning();
    await assertRotated(restarted, device!, legacy);
    await restarted.stop();
  });

  test("provisioning answer lost: TIMEOUT unconfirmed; the retry hands out the same secret and the device converges", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(s, device!);
    legacy.faults.provisioningAnswersToLose = 1;
    await rotate(s, device!);
    await newSecretIssued(s, device!);
    await expireNow(s, device!.id);
    await s.services.rotation.runCycle();
    await assertUnconfirmedTimeout(s, device!);
    assert.equal(legacy.secret, device!.secret, "it still holds the old secret");

    await cycleUntilRotated(s, device!);
    await assertRotated(s, device!, legacy);
    const [client] = await s.services.database.db.select().from(builtinClients).where(eq(builtinClients.clientId, device!.clientId));
    assert.equal(client!.secretGeneration, 2, "exactly one new secret was issued");
  });

  test("acknowledgement lost (its config requests never arrive): TIMEOUT unconfirmed, then completes", async () => {
    const s = await server();
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(s, device!);
    await rotate(s, device!);
    legacy.faults.configRequestsToLose = Number.MAX_SAFE_INTEGER;
    await newSecretIssued(s, device!);
    await waitFor("the device to restart", async () => legacy.restarts === 1);
    await expireNow(s, device!.id);
    await s.services.rotation.runCycle();
    await assertUnconfirmedTimeout(s, device!);

    legacy.faults.configRequestsToLose = 0;
    await legacy.untilRunning();
    await assertRotated(s, device!, legacy);
  });

  test("rotation jobs racing from three processes with faulty devices: one PENDING at a time, every device rotated", async () => {
    const s = await server();
    const fleet = await createFleet(s, 4);
    const others = [await server({ databaseUrl: s.databaseUrl }), await server({ databaseUrl: s.databaseUrl })];
    const legacies = await Promise.all(fleet.map((device) => bootedLegacyDevice(s, device)));
    legacies[0]!.faults.provisioningAnswersToLose = 1;
    legacies[1]!.faults.wifiDownAtNextRestart = true;
    legacies[2]!.faults.configRequestsToLose = 20;
    assert.deepEqual(await (await s.admin("POST", "/api/rotation/trigger")).json(), { queued_count: 4 });
    await waitFor("every device to be rotated", async () => {
      const states = (await s.services.database.db.select({ state: devices.rotationState }).from(devices)).map((row) => row.state);
      assert.ok(states.filter((state) => state === "PENDING").length <= 1, "never two devices PENDING");
      if (states.every((state) => state === "OK")) return true;
      if (legacies[1]!.restarts > 0) legacies[1]!.wifiUp();
      await expireNow(s);
      await retryNow(s);
      await Promise.all([s, ...others].flatMap((instance) => [instance.services.rotation.runCycle(), instance.services.rotation.runCycle()]));
      return false;
    }, 60_000, 300);
    for (const [index, legacy] of legacies.entries()) await assertRotated(s, fleet[index]!, legacy);
    for (const other of others) await other.stop();
  });

  test("a device that stays away past the grace period: what it gets, what the admin sees", async () => {
    const s = await server();
    const [holdsOld, holdsNew] = await createFleet(s, 2);
    const away = await bootedLegacyDevice(s, holdsOld!);
    const wifiless = await bootedLegacyDevice(s, holdsNew!);

    // One device lost its package and then went away still holding the old secret.
    away.faults.provisioningAnswersToLose = 1;
    await rotate(s, holdsOld!);
    await newSecretIssued(s, holdsOld!);
    await away.stop();
    await expireNow(s, holdsOld!.id);
    await s.services.rotation.runCycle();
    // The other one stored its new secret and lost WiFi for as long.
    wifiless.faults.wifiDownAtNextRestart = true;
    await rotate(s, holdsNew!);
    await newSecretIssued(s, holdsNew!);
    await waitFor("the second device to restart", async () => wifiless.restarts === 1);
    await expireNow(s, holdsNew!.id);
    await s.services.rotation.runCycle();

    const detail = await (await s.admin("GET", `/api/devices/${holdsOld!.id}`)).json();
    assert.equal(detail.rotation_state, "TIMEOUT");
    assert.equal(detail.rotation_unconfirmed, true);
    const graceDays = (Date.parse(detail.previous_secret_expires_at) - Date.now()) / 86_400_000;
    assert.ok(graceDays > 29.9 && graceDays <= 30, `the old secret works for 30 more days (${graceDays})`);
    const listed = (await (await s.admin("GET", "/api/devices")).json()).devices.find((d: { id: number }) => d.id === holdsOld!.id);
    assert.equal(listed.rotation_unconfirmed, true);
    const dashboard = await (await s.admin("GET", "/api/rotation/dashboard")).json();
    assert.equal(dashboard.counts.unconfirmed, 2);
    assert.ok([...dashboard.warning, ...dashboard.critical].every((row: { rotation_unconfirmed: boolean }) => row.rotation_unconfirmed));
    assert.equal((await (await s.admin("GET", "/api/rotation/status")).json()).unconfirmed_count, 2);
    assert.match(await (await fetch(`${s.url}/metrics`)).text(), /^iot_rotation_unconfirmed_devices 2$/m);

    await endGrace(s, holdsOld!);
    await endGrace(s, holdsNew!);
    // Back after the grace period with the old secret: locked out, as documented; the admin still sees why.
    const returned = legacyDevice(s, holdsOld!);
    devicesToStop.push(returned);
    await waitFor("its token request to be refused", async () => returned.lockouts > 0);
    assert.equal((await returned.freshToken()).status, 401);
    const after = await (await s.admin("GET", `/api/devices/${holdsOld!.id}`)).json();
    assert.equal(after.rotation_unconfirmed, true);
    assert.ok(Date.parse(after.previous_secret_expires_at) < Date.now(), "the admin sees the old secret has expired");
    // Back after the grace period with the new secret: it completes the rotation.
    wifiless.wifiUp();
    await wifiless.untilRunning();
    await assertRotated(s, holdsNew!, wifiless);
    // The locked-out device is re-provisioned by hand with the package the admin downloads.
    const pkg = await (await s.admin("GET", `/api/devices/${holdsOld!.id}/provisioning`)).json();
    assert.equal(await canAuthenticate(s, holdsOld!.clientId, pkg.client_secret), true);
  });
});
