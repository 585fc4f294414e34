/**
 * Behaviour every IdentityProvider must have (Keycloak and built-in run the same suite).
 *
 *   describeIdentityProviderContract("keycloak", async () => ({ provider, canAuthenticate, close }));
 *
 * canAuthenticate(clientId, secret) answers whether a client-credentials grant with that secret succeeds now
 * (it should throw on anything other than success or a credentials rejection). tokenSecretGeneration, for a provider
 * that numbers its secrets, reads the `secret_generation` claim of such a token (null when the grant is refused).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AppError } from "../../lib/errors.ts";
import type { IdentityProvider } from "../../lib/identity/provider.ts";

export type IdentityContractSetup = () => Promise<{
  provider: IdentityProvider;
  canAuthenticate(clientId: string, secret: string): Promise<boolean>;
  tokenSecretGeneration?(clientId: string, secret: string): Promise<number | null>;
  close(): Promise<void>;
}>;

/** A client id shaped like a device's (`iotdevice-<model code>-<key>`), unique per call. */
export function testClientId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const key = Array.from(randomBytes(8), (b) => alphabet[b % alphabet.length]).join("");
  return `iotdevice-test-${key}`;
}

async function rejectsWithStatus(promise: Promise<unknown>, status: number) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
    assert.equal(error.status, status, `expected HTTP ${status}, got ${error.status} (${error.message})`);
    return true;
  });
}

export function describeIdentityProviderContract(name: string, setup: IdentityContractSetup): void {
  describe(`IdentityProvider contract: ${name}`, () => {
    let env: Awaited<ReturnType<IdentityContractSetup>>;
    const created: string[] = [];

    async function create() {
      const clientId = testClientId();
      created.push(clientId);
      const result = await env.provider.createClient(clientId);
      return { clientId, ...result };
    }

    before(async () => {
      env = await setup();
    });

    after(async () => {
      if (!env) return;
      try {
        for (const clientId of created) await env.provider.deleteClient(clientId);
      } finally {
        await env.close();
      }
    });

    it("creates a client whose secret works, can be read back and shows in status", async () => {
      const { clientId, externalId, secret } = await create();
      assert.ok(externalId, "externalId is set");
      assert.ok(secret.length >= 16, "the secret is not trivially short");
      assert.equal(await env.canAuthenticate(clientId, secret), true);
      assert.equal(await env.provider.getSecret(clientId), secret);
      const status = await env.provider.status(clientId);
      assert.equal(status.exists, true);
      assert.equal(status.externalId, externalId);
    });

    it("regenerates: a different secret that works, and the old one stops working", async () => {
      const { clientId, secret: old } = await create();
      const fresh = await env.provider.regenerateSecret(clientId);
      assert.notEqual(fresh, old);
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
      assert.equal(await env.canAuthenticate(clientId, old), false);
      assert.equal(await env.provider.getSecret(clientId), fresh);
    });

    it("setSecret restores a previous secret, which works again", async () => {
      const { clientId, secret: old } = await create();
      const fresh = await env.provider.regenerateSecret(clientId);
      await env.provider.setSecret(clientId, old);
      assert.equal(await env.canAuthenticate(clientId, old), true);
      assert.equal(await env.canAuthenticate(clientId, fresh), false);
      assert.equal(await env.provider.getSecret(clientId), old);
    });

    it("keeps the previous secret on rotation (Keycloak: the realm's secret-rotation policy is on)", async () => {
      assert.equal(await env.provider.keepsPreviousSecret(), true);
    });

    it("rotateSecret: a new secret that works; the old one keeps working until the time it reports", async () => {
      const { clientId, secret: old } = await create();
      const { secret: fresh, generation, previousValidUntil } = await env.provider.rotateSecret(clientId, new Date(Date.now() + 3_600_000));
      assert.notEqual(fresh, old);
      assert.ok(previousValidUntil > new Date(), "the previous secret's end is reported");
      assert.equal(await env.provider.getSecret(clientId), fresh);
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
      assert.equal(await env.canAuthenticate(clientId, old), true);
      if (env.tokenSecretGeneration) {
        assert.equal(await env.tokenSecretGeneration(clientId, fresh), generation, "a token names the secret it was made with");
        assert.equal(await env.tokenSecretGeneration(clientId, old), generation! - 1);
      }
    });

    it("retirePreviousSecret ends the previous secret at once and leaves the current one alone", async () => {
      const { clientId, secret: old } = await create();
      const { secret: fresh } = await env.provider.rotateSecret(clientId, new Date(Date.now() + 3_600_000));
      await env.provider.retirePreviousSecret(clientId);
      assert.equal(await env.canAuthenticate(clientId, old), false);
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
      await env.provider.retirePreviousSecret(clientId);
      const { secret: next } = await env.provider.rotateSecret(clientId, new Date(Date.now() + 3_600_000));
      assert.notEqual(next, fresh, "after retiring, the next rotation makes a new secret");
    });

    it("the previous secret works until the time rotateSecret reported, and not after", async () => {
      const { clientId, secret: old } = await create();
      // The built-in provider takes the caller's time; Keycloak's realm policy sets its own.
      const { secret: fresh, previousValidUntil } = await env.provider.rotateSecret(clientId, new Date(Date.now() - 1000));
      assert.equal(await env.canAuthenticate(clientId, old), previousValidUntil > new Date());
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
    });

    it("rotating again before retiring: at most two secrets work, and never is the one a device may hold ended", async () => {
      const { clientId, secret: first } = await create();
      const until = new Date(Date.now() + 3_600_000);
      const { secret: second } = await env.provider.rotateSecret(clientId, until);
      const { secret: third } = await env.provider.rotateSecret(clientId, until);
      assert.equal(await env.canAuthenticate(clientId, second), true);
      assert.equal(await env.canAuthenticate(clientId, third), true);
      // Built-in: the second rotation replaced the first secret. Keycloak cannot tell an unrecorded rotation from a
      // pending one, so it handed the second secret out again and the first still works.
      assert.equal(await env.canAuthenticate(clientId, first), third === second);
    });

    it("ensureClient keeps a rotation's secrets: both still work", async () => {
      const { clientId, secret: old } = await create();
      const { secret: fresh } = await env.provider.rotateSecret(clientId, new Date(Date.now() + 3_600_000));
      assert.deepEqual(await env.provider.ensureClient(clientId), { created: false });
      assert.equal(await env.provider.getSecret(clientId), fresh);
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
      assert.equal(await env.canAuthenticate(clientId, old), true);
    });

    it("deletes: authentication fails, status says it does not exist, deleting again is fine", async () => {
      const { clientId, secret } = await create();
      await env.provider.deleteClient(clientId);
      assert.equal(await env.canAuthenticate(clientId, secret), false);
      assert.deepEqual(await env.provider.status(clientId), { exists: false, externalId: null, consoleUrl: null });
      await env.provider.deleteClient(clientId);
    });

    it("lists the device clients it holds, and a deleted one no more", async () => {
      const kept = await create();
      const gone = await create();
      await env.provider.deleteClient(gone.clientId);
      const listed = await env.provider.listClientIds();
      assert.ok(listed.includes(kept.clientId), "a client it holds is listed");
      assert.ok(!listed.includes(gone.clientId), "a deleted client is not");
      assert.ok(listed.every((id) => id.startsWith("iotdevice-")), "only device clients are listed");
    });

    it("reports a client that never existed as not existing, and deleting it is fine", async () => {
      const clientId = testClientId();
      assert.equal((await env.provider.status(clientId)).exists, false);
      await env.provider.deleteClient(clientId);
    });

    it("refuses to create a client that already exists (409) and keeps the existing secret", async () => {
      const { clientId, secret } = await create();
      await rejectsWithStatus(env.provider.createClient(clientId), 409);
      assert.equal(await env.provider.getSecret(clientId), secret);
      assert.equal(await env.canAuthenticate(clientId, secret), true);
    });

    it("ensureClient leaves a healthy client alone: not created, same secret, still works", async () => {
      const { clientId, externalId, secret } = await create();
      assert.deepEqual(await env.provider.ensureClient(clientId), { created: false });
      assert.equal(await env.provider.getSecret(clientId), secret);
      assert.equal(await env.canAuthenticate(clientId, secret), true);
      assert.equal((await env.provider.status(clientId)).externalId, externalId);
    });

    it("ensureClient recreates a deleted client with a new secret that works", async () => {
      const { clientId, secret: old } = await create();
      await env.provider.deleteClient(clientId);
      assert.deepEqual(await env.provider.ensureClient(clientId), { created: true });
      const fresh = await env.provider.getSecret(clientId);
      assert.notEqual(fresh, old);
      assert.equal(await env.canAuthenticate(clientId, fresh), true);
      assert.equal(await env.canAuthenticate(clientId, old), false);
      assert.equal((await env.provider.status(clientId)).exists, true);
    });

    it("a missing client is the same 404 CLIENT_NOT_FOUND from every provider and every operation", async () => {
      for (const operation of [
        (id: string) => env.provider.getSecret(id),
        (id: string) => env.provider.regenerateSecret(id),
        (id: string) => env.provider.setSecret(id, "some-secret-value-1234"),
        (id: string) => env.provider.rotateSecret(id, new Date()),
        (id: string) => env.provider.retirePreviousSecret(id),
      ]) {
        await assert.rejects(operation(testClientId()), (error: unknown) => {
          assert.ok(error instanceof AppError && error.status === 404 && error.code === "CLIENT_NOT_FOUND", `got ${String(error)}`);
          return true;
        });
      }
    });
  });
}
