import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { faultyIdentity } from "./support/faulty-identity.ts";
import { createFleet, deviceRow, disconnectSimulations, expireNow, simulate } from "./support/fleet.ts";
import { clientCredentialsToken, requireKeycloak } from "./support/keycloak.ts";
import { keycloakEnv, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";
import type { IdentityProvider } from "../lib/identity/provider.ts";

/**
 * Rotation against the real Keycloak, with network faults injected at each identity-provider step: with the realm's
 * secret-rotation policy (previous secret kept, completion proven at the backend's token pass-through), and without it
 * (a restore point, restored on timeout).
 */
const servers: TestServer[] = [];
after(async () => {
  await disconnectSimulations();
  for (const server of servers) await server.close();
});

async function provisioningWith(s: TestServer, token: string) {
  const response = await fetch(`${s.url}/iot/provisioning`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json() };
}

describe("credential rotation with Keycloak", () => {
  const faults = faultyIdentity();
  let s: TestServer;
  before(async () => {
    await requireKeycloak();
    s = await startTestServer({ env: keycloakEnv(), overrides: { identity: faults.wrap } });
    servers.push(s);
  });

  test("a fleet of 5 rotates and every device can get a Keycloak token with the secret it holds", async () => {
    const fleet = await createFleet(s, 5);
    const sims = fleet.map((device) => simulate(s, device));
    await Promise.all(sims.map((sim) => sim.ready));
    await s.admin("POST", "/api/rotation/trigger");
    await waitFor("the fleet to be OK", async () => {
      const rows = await Promise.all(fleet.map((device) => deviceRow(s, device.id)));
      return rows.every((row) => row.rotationState === "OK");
    }, 60_000);
    // The row turns OK before the device has read the answer that completed it.
    await Promise.all(sims.map((sim) => sim.settled()));
    for (const [index, sim] of sims.entries()) {
      assert.equal(sim.rotations, 1);
      assert.notEqual(sim.secret, fleet[index]!.secret);
      assert.equal((await sim.tokenFor()).ok, true);
      assert.equal((await sim.tokenFor(fleet[index]!.secret)).ok, false);
    }
    await Promise.all(sims.map((sim) => sim.stop()));
  });

  test("Keycloak unreachable at each step of the provisioning fetch: no state lost, the old secret kept, the retry succeeds", async () => {
    for (const fault of [
      { operation: "keepsPreviousSecret", when: "before" },
      { operation: "rotateSecret", when: "before" },
      { operation: "rotateSecret", when: "after" },
    ] as const) {
      const [device] = await createFleet(s, 1);
      const sim = simulate(s, device!, "offline");
      const token = (await sim.tokenFor()).token!;
      await s.services.rotation.rotateDevice(device!.id, "test-admin");
      assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING");

      faults.set(fault);
      const failed = await provisioningWith(s, token);
      faults.set(null);
      assert.equal(failed.status, 503, `${fault.operation} ${fault.when}`);
      assert.equal(failed.body.code, "UPSTREAM_UNAVAILABLE");
      const row = await deviceRow(s, device!.id);
      assert.equal(row.rotationState, "PENDING", "still rotating");
      assert.equal(row.newSecretIssuedAt, null, "no new secret recorded");

      const retried = await provisioningWith(s, token);
      assert.equal(retried.status, 200);
      const newSecret = retried.body.client_secret as string;
      assert.notEqual(newSecret, device!.secret);
      assert.equal(retried.body.token_url, `${s.url}/oauth2/token`, "devices get their tokens through the backend");
      assert.equal((await sim.tokenFor(device!.secret)).ok, true, "the old secret still works");
      const viaKeycloak = await sim.tokenFor(newSecret);
      assert.equal(viaKeycloak.ok, true, "the issued secret works");
      await (await fetch(`${s.url}/iot/config`, { headers: { authorization: `Bearer ${viaKeycloak.token}` } })).body?.cancel();
      assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING", "a Keycloak token names no secret: no completion");
      const viaBackend = await clientCredentialsToken(retried.body.token_url, device!.clientId, newSecret);
      assert.equal(viaBackend.ok, true);
      const config = await fetch(`${s.url}/iot/config`, { headers: { authorization: `Bearer ${viaBackend.accessToken}` } });
      await config.body?.cancel();
      assert.equal(config.headers.get("x-rotation"), "completed");
      assert.equal((await deviceRow(s, device!.id)).rotationState, "OK", `${fault.operation} ${fault.when}: completed`);
      assert.equal((await sim.tokenFor(device!.secret)).ok, false, "the old secret is retired");
    }
  });

});

describe("credential rotation with Keycloak without its secret-rotation policy", () => {
  const faults = faultyIdentity();
  let s: TestServer;
  before(async () => {
    await requireKeycloak();
    // As a realm without the policy: the engine keeps a restore point, and regenerating ends the old secret at once.
    const withoutPolicy = (real: IdentityProvider): IdentityProvider => faults.wrap({ ...real, keepsPreviousSecret: async () => false });
    s = await startTestServer({ env: keycloakEnv(), overrides: { identity: withoutPolicy } });
    servers.push(s);
  });

  test("Keycloak unreachable when a timeout restores the secret: the device stays PENDING and is restored later", async () => {
    for (const when of ["before", "after"] as const) {
      const [device] = await createFleet(s, 1);
      const sim = simulate(s, device!, "never-acknowledge");
      await sim.ready;
      await s.services.rotation.rotateDevice(device!.id, "test-admin");
      await waitFor("the new secret to be issued", async () => (await deviceRow(s, device!.id)).newSecretIssuedAt);
      await sim.settled();
      await expireNow(s, device!.id);

      faults.set({ operation: "setSecret", when });
      const failed = await s.services.rotation.runCycle();
      faults.set(null);
      assert.equal(failed.errors.length, 1);
      assert.equal((await deviceRow(s, device!.id)).rotationState, "PENDING", "kept PENDING for a retry");

      const retried = await s.services.rotation.runCycle();
      assert.deepEqual(retried.errors, []);
      assert.equal((await deviceRow(s, device!.id)).rotationState, "TIMEOUT");
      assert.equal((await sim.tokenFor(device!.secret)).ok, true, "the old secret works again");
      assert.equal((await sim.authenticate()).ok, true, "the device finds a working secret");
      await sim.stop();
    }
  });

  test("a changed encryption key fails that device clearly while the others rotate", async () => {
    const [stuck, other] = await createFleet(s, 2);
    const stuckSim = simulate(s, stuck!, "never-acknowledge");
    const otherSim = simulate(s, other!);
    await Promise.all([stuckSim.ready, otherSim.ready]);
    await s.services.rotation.rotateDevice(stuck!.id, "test-admin");
    await waitFor("the stuck device's new secret", async () => (await deviceRow(s, stuck!.id)).previousSecretEncrypted);
    await stuckSim.settled();
    await s.services.rotation.rotateDevice(other!.id, "test-admin");

    // Another process with a different key takes over (the key was changed and the backend restarted).
    const restarted = await startTestServer({
      databaseUrl: s.databaseUrl,
      env: { ...keycloakEnv(), SECRET_ENCRYPTION_KEY: "Hd5Ah-8JHW0i7nT3Q6DuI0n5Vt7gQwJf7bJgJfN6kVQ=" },
      overrides: { identity: (real) => ({ ...real, keepsPreviousSecret: async () => false }) },
    });
    try {
      await expireNow(restarted, stuck!.id);
      const summary = await restarted.services.rotation.runCycle();
      assert.deepEqual(summary.errors, []);
      const row = await deviceRow(restarted, stuck!.id);
      assert.equal(row.rotationState, "TIMEOUT");
      assert.match(row.rotationError!, /SECRET_ENCRYPTION_KEY/);
      assert.equal((await stuckSim.authenticate()).ok, true, "it still holds a working secret (the new one)");
      assert.equal(summary.started, other!.key, "the fleet goes on");
    } finally {
      await restarted.stop();
    }
    await waitFor("the other device to rotate", async () => (await deviceRow(s, other!.id)).rotationState === "OK");
    await Promise.all([stuckSim.stop(), otherSim.stop()]);
  });
});
