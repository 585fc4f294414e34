/** An in-memory IdentityProvider that keeps the previous secret through its grace time, as the built-in one does. */
import { AppError } from "../../../lib/errors.ts";
import { clientNotFound, type IdentityProvider } from "../../../lib/identity/provider.ts";
import { randomSecret } from "../../../lib/secrets.ts";

type Client = { secret: string; generation: number; previous: { secret: string; until: Date } | null };

export type FakeIdentityProvider = IdentityProvider & {
  /** Which numbered secret of the client `secret` is, if it works now; null when it does not (a refused grant). */
  generationOf(clientId: string, secret: string): Promise<number | null>;
};

export function fakeIdentityProvider(tokenUrl = "http://iot.test/oauth2/token"): FakeIdentityProvider {
  const clients = new Map<string, Client>();
  const find = (clientId: string) => {
    const client = clients.get(clientId);
    if (!client) throw clientNotFound(clientId);
    return client;
  };
  const replaceSecret = (clientId: string, secret: string, previous: Client["previous"]) => {
    const client = find(clientId);
    clients.set(clientId, { secret, generation: client.generation + 1, previous });
    return client;
  };

  return {
    kind: "builtin",
    keepsPreviousSecret: async () => true,
    tokenUrl,
    deviceTokenUrl: async () => tokenUrl,
    async createClient(clientId) {
      if (clients.has(clientId)) throw new AppError(409, "CLIENT_EXISTS", `The OAuth2 client ${clientId} exists already.`);
      const secret = randomSecret();
      clients.set(clientId, { secret, generation: 1, previous: null });
      return { externalId: clientId, secret };
    },
    async listClientIds() {
      return [...clients.keys()].sort();
    },
    async deleteClient(clientId) {
      clients.delete(clientId);
    },
    async getSecret(clientId) {
      return find(clientId).secret;
    },
    async regenerateSecret(clientId) {
      const secret = randomSecret();
      replaceSecret(clientId, secret, null);
      return secret;
    },
    async rotateSecret(clientId, previousValidUntil) {
      const secret = randomSecret();
      const old = replaceSecret(clientId, secret, { secret: find(clientId).secret, until: previousValidUntil });
      return { secret, generation: old.generation + 1, previousValidUntil };
    },
    async retirePreviousSecret(clientId) {
      find(clientId).previous = null;
    },
    async setSecret(clientId, secret) {
      replaceSecret(clientId, secret, null);
    },
    async status(clientId) {
      return clients.has(clientId) ? { exists: true, externalId: clientId, consoleUrl: null } : { exists: false, externalId: null, consoleUrl: null };
    },
    async ensureClient(clientId) {
      if (clients.has(clientId)) return { created: false };
      await this.createClient(clientId);
      return { created: true };
    },
    async generationOf(clientId, secret) {
      const client = clients.get(clientId);
      if (!client) return null;
      if (secret === client.secret) return client.generation;
      const previous = client.previous;
      return previous && previous.secret === secret && previous.until.getTime() > Date.now() ? client.generation - 1 : null;
    },
  };
}
