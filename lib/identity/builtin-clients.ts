import { eq, sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { builtinClients } from "../../db/schema.ts";
import { executorFor } from "../../db/transaction-scope.ts";
import { isUniqueViolation } from "../db-errors.ts";
import { conflict } from "../http/errors.ts";
import { randomSecret, type SecretBox } from "../secrets.ts";
import { clientNotFound, type IdentityProvider } from "./provider.ts";


/**
 * A client's secret as stored (sealed with the SecretBox), or null for an unknown client. One row either way (a
 * miss is a row of null), so that a miss costs the token endpoint about what a hit does.
 */
export async function sealedSecretOf(db: Database, clientId: string): Promise<string | null> {
  const [row] = await executorFor(db)
    .select({ sealed: builtinClients.secretEncrypted })
    .from(sql`(values (1)) as one`)
    .leftJoin(builtinClients, eq(builtinClients.clientId, clientId));
  return row?.sealed ?? null;
}

/**
 * Device clients of the built-in identity provider: rows in builtin_clients with Fernet-encrypted secrets, so the
 * provisioning download can show the current secret (as Keycloak can) while the database never holds it in clear.
 */
export function createBuiltinClientStore(options: { db: Database; secretBox: SecretBox; tokenUrl: string }): IdentityProvider {
  const { db, secretBox } = options;

  async function storeSecret(clientId: string, secret: string) {
    const updated = await executorFor(db)
      .update(builtinClients)
      .set({ secretEncrypted: secretBox.encrypt(secret), secretUpdatedAt: new Date(), updatedAt: new Date() })
      .where(eq(builtinClients.clientId, clientId))
      .returning({ clientId: builtinClients.clientId });
    if (updated.length === 0) throw clientNotFound(clientId);
  }

  return {
    kind: "builtin",
    tokenUrl: options.tokenUrl,

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

    async deleteClient(clientId) {
      await executorFor(db).delete(builtinClients).where(eq(builtinClients.clientId, clientId));
    },

    async getSecret(clientId) {
      const sealed = await sealedSecretOf(db, clientId);
      if (sealed === null) throw clientNotFound(clientId);
      return secretBox.decrypt(sealed);
    },

    async regenerateSecret(clientId) {
      const secret = randomSecret();
      await storeSecret(clientId, secret);
      return secret;
    },

    setSecret: storeSecret,

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

