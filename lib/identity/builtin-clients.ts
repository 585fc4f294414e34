import { eq, sql } from "drizzle-orm";
import type { PgUpdateSetSource } from "drizzle-orm/pg-core";
import type { Database } from "../../db/client.ts";
import { builtinClients } from "../../db/schema.ts";
import { executorFor } from "../transaction-scope.ts";
import { isUniqueViolation } from "../db-errors.ts";
import { conflict } from "../errors.ts";
import { randomSecret, sameSecret, type SecretBox } from "../secrets.ts";
import { clientNotFound, type IdentityProvider } from "./provider.ts";

export type BuiltinClientStore = IdentityProvider & {
  /**
   * Which of the client's secrets `secret` is: the generation of the current one, or of the previous one while it has
   * not expired; null for anything else (also an unknown client). Compared in constant time, both of them always.
   */
  generationOf(clientId: string, secret: string): Promise<number | null>;
};

/**
 * A client's secrets as stored (sealed with the SecretBox), or a row of nulls for an unknown client: one row either
 * way, so that a miss costs the token endpoint about what a hit does.
 */
async function storedSecretsOf(db: Database, clientId: string) {
  const [row] = await executorFor(db)
    .select({
      sealed: builtinClients.secretEncrypted,
      generation: builtinClients.secretGeneration,
      previousSealed: builtinClients.previousSecretEncrypted,
      previousExpiresAt: builtinClients.previousSecretExpiresAt,
    })
    .from(sql`(values (1)) as one`)
    .leftJoin(builtinClients, eq(builtinClients.clientId, clientId));
  return row!;
}

/**
 * Device clients of the built-in identity provider: rows in builtin_clients with Fernet-encrypted secrets, so the
 * provisioning download can show the current secret (as Keycloak can) while the database never holds it in clear.
 * Every write joins the caller's transaction (db/transaction-scope.ts), so a rotation step commits with its device row.
 */
export function createBuiltinClientStore(options: { db: Database; secretBox: SecretBox; tokenUrl: string }): BuiltinClientStore {
  const { db, secretBox } = options;
  // Sealed like a real secret, so that an unknown client costs the same decryption and comparison as a known one.
  const decoy = secretBox.encrypt(randomSecret());

  async function update(clientId: string, values: PgUpdateSetSource<typeof builtinClients>) {
    const [updated] = await executorFor(db)
      .update(builtinClients)
      .set({ ...values, updatedAt: new Date() })
      .where(eq(builtinClients.clientId, clientId))
      .returning({ generation: builtinClients.secretGeneration });
    if (!updated) throw clientNotFound(clientId);
    return updated.generation;
  }

  /** A new current secret; the one it replaces stays valid until `previousValidUntil` (null: not at all). */
  async function replaceSecret(clientId: string, secret: string, previousValidUntil: Date | null) {
    return update(clientId, {
      secretEncrypted: secretBox.encrypt(secret),
      secretUpdatedAt: new Date(),
      secretGeneration: sql`${builtinClients.secretGeneration} + 1`,
      previousSecretEncrypted: previousValidUntil ? sql`${builtinClients.secretEncrypted}` : null,
      previousSecretExpiresAt: previousValidUntil,
    });
  }

  return {
    kind: "builtin",
    keepsPreviousSecret: async () => true,
    tokenUrl: options.tokenUrl,
    deviceTokenUrl: async () => options.tokenUrl,

    async createClient(clientId) {
      const secret = randomSecret();
      try {
        await executorFor(db).insert(builtinClients).values({ clientId, secretEncrypted: secretBox.encrypt(secret) });
      } catch (error) {
        if (isUniqueViolation(error)) throw conflict(`OAuth2 client ${clientId} already exists.`, "CLIENT_EXISTS");
        throw error;
      }
      return { externalId: clientId, secret };
    },

    async listClientIds() {
      const rows = await executorFor(db).select({ clientId: builtinClients.clientId }).from(builtinClients).orderBy(builtinClients.clientId);
      return rows.map((row) => row.clientId);
    },

    async deleteClient(clientId) {
      await executorFor(db).delete(builtinClients).where(eq(builtinClients.clientId, clientId));
    },

    async getSecret(clientId) {
      const { sealed } = await storedSecretsOf(db, clientId);
      if (sealed === null) throw clientNotFound(clientId);
      return secretBox.decrypt(sealed);
    },

    async generationOf(clientId, secret) {
      const row = await storedSecretsOf(db, clientId);
      // Both comparisons always run, on the decoy where a secret is missing: the time taken tells nothing.
      const isCurrent = sameSecret(secretBox.decrypt(row.sealed ?? decoy), secret);
      const isPrevious = sameSecret(secretBox.decrypt(row.previousSealed ?? decoy), secret);
      if (row.sealed === null || row.generation === null) return null;
      if (isCurrent) return row.generation;
      const previousValid = row.previousSealed !== null && row.previousExpiresAt !== null && row.previousExpiresAt > new Date();
      return isPrevious && previousValid ? row.generation - 1 : null;
    },

    async regenerateSecret(clientId) {
      const secret = randomSecret();
      await replaceSecret(clientId, secret, null);
      return secret;
    },

    async rotateSecret(clientId, previousValidUntil) {
      const secret = randomSecret();
      return { secret, generation: await replaceSecret(clientId, secret, previousValidUntil), previousValidUntil };
    },

    async retirePreviousSecret(clientId) {
      await update(clientId, { previousSecretEncrypted: null, previousSecretExpiresAt: null });
    },

    async setSecret(clientId, secret) {
      await replaceSecret(clientId, secret, null);
    },

    async status(clientId) {
      const [row] = await executorFor(db).select({ clientId: builtinClients.clientId }).from(builtinClients).where(eq(builtinClients.clientId, clientId));
      return { exists: Boolean(row), externalId: row ? clientId : null, consoleUrl: null };
    },

    // A stored client has nothing to repair: its row is all there is.
    async ensureClient(clientId) {
      const inserted = await executorFor(db)
        .insert(builtinClients)
        .values({ clientId, secretEncrypted: secretBox.encrypt(randomSecret()) })
        .onConflictDoNothing()
        .returning({ clientId: builtinClients.clientId });
      return { created: inserted.length > 0 };
    },
  };
}
