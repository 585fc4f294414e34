import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { clientCredentialsToken, requireKeycloak } from "./support/keycloak.ts";
import { createFleet, deviceRow, expireNow, legacyDevice, retryNow } from "./support/fleet.ts";
import type { LegacyDevice } from "./support/legacy-device.ts";
import { keycloakEnv, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * Issue 11 with Keycloak: devices with the deployed firmware (CONTRACT §10: one secret, restart right after storing the
 * package) through every fault that used to lock them out, against the real Keycloak with its secret-rotation policy.
 * The package sends their token requests through the backend's pass-through, where a token from the new secret
 * completes the rotation. Each ends rotated (OK, the old secret refused) and authenticating, with no token ever refused.
 */
const devicesToStop: LegacyDevice[] = [];
let s: TestServer;
/** While set, the backend's pass-through cannot reach Keycloak (Keycloak down for the devices). */
let keycloakDown = false;

before(async () => {
  await requireKeycloak();
  const tokenPassThroughFetch: typeof fetch = (input, init) =>
    keycloakDown ? Promise.reject(new TypeError("fetch failed")) : fetch(input, init);
  s = await startTestServer({ env: { ...keycloakEnv(), MQTT_LEGACY_TOPICS: "true" }, overrides: { tokenPassThroughFetch } });
});
after(async () => {
  for (const device of devicesToStop) await device.stop();
  await s?.close();
});

type FleetDevice = Awaited<ReturnType<typeof createFleet>>[number];

async function bootedLegacyDevice(device: FleetDevice) {
  const legacy = legacyDevice(s, device);
  devicesToStop.push(legacy);
  await legacy.untilRunning();
  return legacy;
}

const rotate = async (device: FleetDevice) => assert.equal((await s.admin("POST", `/api/devices/${device.id}/rotate`)).status, 200);
const canAuthenticate = async (clientId: string, secret: string) => (await clientCredentialsToken(s.services.identity.tokenUrl, clientId, secret)).ok;
const newSecretIssued = (device: FleetDevice) => waitFor("the new secret to be issued", async () => (await deviceRow(s, device.id)).newSecretIssuedAt);

async function assertUnconfirmedTimeout(device: FleetDevice) {
  const row = await deviceRow(s, device.id);
  assert.equal(row.rotationState, "TIMEOUT");
  assert.equal(row.rotationUnconfirmed, true, "marked unconfirmed");
  assert.equal(row.previousSecretEncrypted, null, "no restore point: nothing is restored");
  assert.equal(await canAuthenticate(device.clientId, device.secret), true, "the old secret still works");
  assert.equal(await canAuthenticate(device.clientId, await s.services.identity.getSecret(device.clientId)), true, "the new secret works");
}

async function assertRotated(device: FleetDevice, legacy: LegacyDevice) {
  await waitFor("the rotation to complete", async () => (await deviceRow(s, device.id)).rotationState === "OK");
  const row = await deviceRow(s, device.id);
  assert.equal(row.rotationUnconfirmed, false);
  assert.equal(row.newSecretIssuedAt, null);
  assert.notEqual(legacy.secret, device.secret, "the device holds a new secret");
  assert.equal((await legacy.freshToken()).ok, true, "the device authenticates");
  assert.equal(await canAuthenticate(device.clientId, device.secret), false, "the old secret is refused");
  assert.equal(legacy.lockouts, 0, "no token of the device was ever refused");
}

describe("rotation with devices running the deployed firmware (Keycloak)", () => {
  test("a legacy device rotates at once: its first token from the new secret, through the pass-through, completes it", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    await rotate(device!);
    await assertRotated(device!, legacy);
    assert.equal(legacy.restarts, 1);
    assert.equal((await s.admin("GET", `/api/devices/${device!.id}/provisioning`).then((r) => r.json())).token_url, `${s.url}/oauth2/token`);
  });

  test("WiFi down after its restart for longer than the timeout: TIMEOUT unconfirmed, then completes when it returns", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    legacy.faults.wifiDownAtNextRestart = true;
    await rotate(device!);
    await newSecretIssued(device!);
    await waitFor("the device to restart", async () => legacy.restarts === 1);
    await expireNow(s, device!.id);
    assert.equal((await s.services.rotation.runCycle()).timed_out, 1);
    await assertUnconfirmedTimeout(device!);
    assert.equal(legacy.secret, await s.services.identity.getSecret(device!.clientId), "it holds only the new secret");

    legacy.wifiUp();
    await legacy.untilRunning();
    await assertRotated(device!, legacy);
  });

  test("Keycloak down during its restart for longer than the timeout: TIMEOUT unconfirmed, then completes", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    legacy.faults.atNextRestart = async () => {
      keycloakDown = true;
    };
    await rotate(device!);
    await waitFor("the device to restart and fail to get a token", async () => legacy.restarts === 1 && !legacy.running && keycloakDown);
    await expireNow(s, device!.id);
    assert.equal((await s.services.rotation.runCycle()).timed_out, 1);
    await assertUnconfirmedTimeout(device!);

    keycloakDown = false;
    await legacy.untilRunning();
    await assertRotated(device!, legacy);
  });

  test("provisioning answer lost: TIMEOUT unconfirmed; the retry hands out the same secret and the device converges", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    legacy.faults.provisioningAnswersToLose = 1;
    await rotate(device!);
    await newSecretIssued(device!);
    const issued = await s.services.identity.getSecret(device!.clientId);
    await expireNow(s, device!.id);
    await s.services.rotation.runCycle();
    await assertUnconfirmedTimeout(device!);
    assert.equal(legacy.secret, device!.secret, "it still holds the old secret");

    await waitFor(`device ${device!.key} to be rotated`, async () => {
      if ((await deviceRow(s, device!.id)).rotationState === "OK") return true;
      await expireNow(s);
      await retryNow(s);
      await s.services.rotation.runCycle();
      return false;
    }, 30_000, 300);
    assert.equal(legacy.secret, issued, "the retry handed out the same secret: no second rotation");
    await assertRotated(device!, legacy);
  });

  test("acknowledgement lost (its config requests never arrive): TIMEOUT unconfirmed, then completes", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    await rotate(device!);
    legacy.faults.configRequestsToLose = Number.MAX_SAFE_INTEGER;
    await newSecretIssued(device!);
    await waitFor("the device to prove its new secret", async () => (await deviceRow(s, device!.id)).newSecretProvenAt);
    await expireNow(s, device!.id);
    await s.services.rotation.runCycle();
    await assertUnconfirmedTimeout(device!);

    legacy.faults.configRequestsToLose = 0;
    await legacy.untilRunning();
    await assertRotated(device!, legacy);
  });

  test("a token from the old secret through the pass-through completes nothing", async () => {
    const [device] = await createFleet(s, 1);
    const legacy = await bootedLegacyDevice(device!);
    legacy.faults.provisioningAnswersToLose = 1;
    await rotate(device!);
    await newSecretIssued(device!);
    const viaBackend = await clientCredentialsToken(`${s.url}/oauth2/token`, device!.clientId, device!.secret);
    assert.equal(viaBackend.ok, true, "the old secret still gets a token");
    assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING");
    const wrong = await fetch(`${s.url}/oauth2/token`, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: device!.clientId, client_secret: "not-the-secret" }),
    });
    assert.equal(wrong.status, 401);
    const body = await wrong.json();
    assert.ok(body.error && body.error_description && body.code, `an OAuth2 error in the envelope: ${JSON.stringify(body)}`);
  });
});
