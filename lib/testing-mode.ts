/**
 * TESTING_MODE: what the web UI's end-to-end suite drives the backend with (docs/testing.md, "The web UI's suite").
 * Never in production (lib/config.ts refuses it); without TESTING_MODE none of this exists and its routes answer 404.
 */
import { randomBytes } from "node:crypto";
import type { IdentityProvider } from "./identity/provider.ts";
import type { AdminIdentity } from "./identity/principal.ts";
import { API_PATH, cookiesOf, SESSION_COOKIES, sessionCookieJar } from "./identity/session-cookies.ts";
import type { Logger } from "./logger.ts";

/** Test sessions kept at once; the oldest is forgotten first. A test suite makes a few per test. */
const MAX_SESSIONS = 10_000;
const SESSION_SECONDS = 8 * 3600;

export type TestUser = { subject: string; name: string | null; email: string | null; roles: string[] };

export type TestingMode = {
  /** A new in-memory session for `user`: the Set-Cookie of its session cookie. */
  startSession(user: TestUser): string[];
  /** Forgets the request's session (if any): the Set-Cookie that expires its cookie. */
  endSession(request: Request): string[];
  /** The user of the request's test session, or null. */
  sessionFromRequest(request: Request): AdminIdentity | null;
  /** The next single GET /api/auth/self answers `status`. */
  failNextSelf(status: number): void;
  /** The status the next /api/auth/self must answer, once; null when none was asked for. */
  takeSelfFailure(): number | null;
  /** Deletes the device clients of the identity provider whose whole client id matches `pattern`; their ids. */
  deleteClientsMatching(pattern: RegExp): Promise<string[]>;
};

export function createTestingMode(options: { identity: IdentityProvider; baseUrl: string; logger: Logger }): TestingMode {
  const { identity, logger } = options;
  const { cookie, cleared } = sessionCookieJar(options.baseUrl);
  const sessions = new Map<string, AdminIdentity>();
  let selfFailure: number | null = null;

  const sessionIdOf = (request: Request) => cookiesOf(request)[SESSION_COOKIES.access];

  return {
    startSession(user) {
      const id = randomBytes(32).toString("base64url");
      sessions.set(id, { kind: "admin", ...user });
      if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
      return [cookie(SESSION_COOKIES.access, id, API_PATH, SESSION_SECONDS)];
    },

    endSession(request) {
      const id = sessionIdOf(request);
      if (id) sessions.delete(id);
      return [cleared(SESSION_COOKIES.access, API_PATH)];
    },

    // No origin check, unlike the other sessions: in testing mode anybody may POST /api/testing/auth/session and be
    // whoever they like, so the check would protect nothing, and the UI suite's API client sends no Origin header.
    sessionFromRequest(request) {
      const id = sessionIdOf(request);
      return (id && sessions.get(id)) || null;
    },

    failNextSelf(status) {
      selfFailure = status;
    },

    takeSelfFailure() {
      const status = selfFailure;
      selfFailure = null;
      return status;
    },

    async deleteClientsMatching(pattern) {
      const matching = (await identity.listClientIds()).filter((clientId) => pattern.test(clientId));
      for (const clientId of matching) await identity.deleteClient(clientId);
      if (matching.length > 0) logger.info("Testing mode: deleted device clients", { count: matching.length, provider: identity.kind });
      return matching;
    },
  };
}

/** The testing routes' service: they are served only in testing mode (functions/index.ts routesFor). */
export function testingModeOf(services: { testing: TestingMode | null }): TestingMode {
  if (!services.testing) throw new Error("A testing route was served without TESTING_MODE");
  return services.testing;
}
