import { createHash } from "node:crypto";
import { z } from "zod";
import { AppError } from "../errors.ts";
import { createFailureBudget } from "../failure-budget.ts";
import { addressBlock } from "../ip-address.ts";
import type { Logger } from "../logger.ts";
import { SecretKeyMismatch, sameSecret, type SecretBox } from "../secrets.ts";
import { assertTrustedOrigin } from "./origin-check.ts";
import { type AdminIdentity, API_TOKEN_ADMIN } from "./principal.ts";
import { API_PATH, cookiesOf, SESSION_COOKIES, sessionCookieJar } from "./session-cookies.ts";

/** How long a sign-in lasts (the OIDC login's default when the IdP does not say). */
const SESSION_SECONDS = 8 * 3600;
/** Addresses remembered by the failure budget: about 200 bytes each. */
const MAX_KEYS = 10_000;
/** The budget key of requests whose address is unknown (no connection, e.g. a test calling the app directly). */
const UNKNOWN_ADDRESS = "unknown";

const sessionSchema = z.object({ sub: z.literal(API_TOKEN_ADMIN.subject), exp: z.number(), token: z.string() });

/** Why a sign-in was refused, as the sign-in page shows it (the `error` of its URL). */
export type SignInRefusal = { error: "invalid_token" | "untrusted_origin" } | { error: "too_many_attempts"; retryAfterSeconds: number };

export type LocalSignIn = {
  /**
   * Checks the admin API token of the sign-in form: the session cookies, or why not. A form posted from another origin
   * is refused before the token is looked at. Wrong tokens are counted per client address; while an address's budget
   * is spent every attempt from it is refused, the right token too.
   */
  signIn(request: Request, token: string, address: string | null): { cookies: string[] } | { refused: SignInRefusal };
  /** The admin of a sign-in cookie (null without a valid one); a state-changing request must come from a trusted origin. */
  sessionFromRequest(request: Request): AdminIdentity | null;
  /** Cookies that end the session. */
  signOut(): string[];
};

/**
 * Browser sign-in without an OIDC provider: the admin types the admin API token into /api/auth/login once and gets the
 * same HttpOnly session cookie as the OIDC login. The cookie holds no token: it is a SecretBox-sealed note of who signed
 * in and until when, with a digest of the admin token it was made with, so changing ADMIN_API_TOKEN ends every session.
 * Sealed rather than kept in memory, so a session survives a restart and works on every replica.
 */
export function createLocalSignIn(options: {
  adminApiToken: string;
  secretBox: SecretBox;
  baseUrl: string;
  trustedOrigins: string[];
  failureLimit: number;
  failureWindowSeconds: number;
  logger: Logger;
}): LocalSignIn {
  const { adminApiToken, secretBox, logger } = options;
  const trustedOrigins = new Set([new URL(options.baseUrl).origin, ...options.trustedOrigins]);
  const { cookie, clearedSession } = sessionCookieJar(options.baseUrl);
  const failures = createFailureBudget({ limit: options.failureLimit, windowSeconds: options.failureWindowSeconds, maxKeys: MAX_KEYS });
  const tokenDigest = createHash("sha256").update(adminApiToken).digest("base64url");

  function readSession(sealed: string): AdminIdentity | null {
    try {
      const session = sessionSchema.parse(JSON.parse(secretBox.decrypt(sealed)));
      return session.exp > Date.now() / 1000 && sameSecret(session.token, tokenDigest) ? API_TOKEN_ADMIN : null;
    } catch (error) {
      if (error instanceof SecretKeyMismatch || error instanceof SyntaxError || error instanceof z.ZodError) return null;
      throw error;
    }
  }

  return {
    signIn(request, token, address) {
      try {
        assertTrustedOrigin(request, trustedOrigins);
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        // Usually a UI served from another address than BASEURL's: the operator must add its origin.
        logger.warn("Sign-in form posted from an untrusted origin (see CSRF_TRUSTED_ORIGINS)", { origin: request.headers.get("origin")?.slice(0, 200) ?? null });
        return { refused: { error: "untrusted_origin" } };
      }
      const key = address ? addressBlock(address) : UNKNOWN_ADDRESS;
      const wait = failures.waitSeconds(key);
      if (wait > 0) return { refused: { error: "too_many_attempts", retryAfterSeconds: wait } };
      if (!sameSecret(token, adminApiToken)) {
        if (failures.spend(key)) logger.warn("Sign-ins refused for a while after repeated wrong admin tokens", { address: address ?? UNKNOWN_ADDRESS });
        else logger.info("Sign-in with a wrong admin token", { address: address ?? UNKNOWN_ADDRESS });
        return { refused: { error: "invalid_token" } };
      }
      logger.info("Admin signed in on the sign-in page", { address: address ?? UNKNOWN_ADDRESS });
      const sealed = secretBox.encrypt(JSON.stringify({ sub: API_TOKEN_ADMIN.subject, exp: Math.floor(Date.now() / 1000) + SESSION_SECONDS, token: tokenDigest }));
      return { cookies: [cookie(SESSION_COOKIES.access, sealed, API_PATH, SESSION_SECONDS)] };
    },

    sessionFromRequest(request) {
      const sealed = cookiesOf(request)[SESSION_COOKIES.access];
      if (!sealed) return null;
      const admin = readSession(sealed);
      if (admin) assertTrustedOrigin(request, trustedOrigins);
      return admin;
    },

    signOut: clearedSession,
  };
}

/** The sign-in page's POST: served only when it is enabled (functions/index.ts routesFor). */
export function localSignInOf(services: { localSignIn: LocalSignIn | null }): LocalSignIn {
  if (!services.localSignIn) throw new Error("The sign-in page was served without being enabled");
  return services.localSignIn;
}
