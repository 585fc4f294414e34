import { decodeJwt } from "jose";
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import { z } from "zod";
import { AppError, unauthorized } from "../errors.ts";
import { assertTrustedOrigin } from "./origin-check.ts";
import type { SecretBox } from "../secrets.ts";
import { LoginRejected, type OidcClient, type OidcTokens, SessionEnded } from "./oidc-client.ts";
import { API_PATH, AUTH_PATH, cookiesOf, SESSION_COOKIES, sessionCookieJar } from "./session-cookies.ts";

/**
 * The browser login (backend-for-frontend): the tokens live in HttpOnly cookies, never in the page's JavaScript.
 * The login's own PKCE verifier, state, nonce and redirect travel in a short-lived cookie encrypted with the
 * SecretBox, named after the state so that two tabs logging in at once do not overwrite each other.
 */
const LOGIN_COOKIE_PREFIX = "iot_login_";
const CALLBACK_PATH = "/api/auth/callback";
const LOGIN_SECONDS = 600;
/** Cookie lifetime when the IdP does not say how long its session lasts. */
const DEFAULT_SESSION_SECONDS = 8 * 3600;
/** Refresh a little before expiry so the token does not lapse between here and the verifier. */
const EXPIRY_MARGIN_SECONDS = 10;

const loginStateSchema = z.object({
  state: z.string(),
  nonce: z.string(),
  codeVerifier: z.string(),
  redirect: z.string(),
  expiresAt: z.number(),
});
type LoginState = z.infer<typeof loginStateSchema>;

export type Redirect = {
  location: string;
  cookies: string[];
  /** Why a login failed, for the log (the browser only sees the login_error code). */
  failure?: string;
};

export type BrowserSession = {
  beginLogin(redirect: string): Promise<Redirect>;
  completeLogin(request: Request): Promise<Redirect>;
  logout(request: Request, redirect: string): Promise<Redirect>;
  /**
   * The admin's access token from the cookie; an expired one is refreshed and the new cookies are added to
   * `responseCookies`. A request that changes state must come from a trusted origin (else 403), checked before the
   * session is touched.
   */
  tokenFromRequest(request: Request, responseCookies: string[]): Promise<string | null>;
};

/** `path` with `login_error=<code>` added to its query, so the UI can say why it is not signed in. */
function withLoginError(path: string, code: string): string {
  const url = new URL(path, "http://redirect.invalid");
  url.searchParams.set("login_error", /^[a-z_]{1,64}$/.test(code) ? code : "login_failed");
  return `${url.pathname}${url.search}${url.hash}`;
}

function expiresSoon(token: string): boolean {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" && exp - EXPIRY_MARGIN_SECONDS <= Date.now() / 1000;
  } catch {
    return true; // not a JWT we could ever verify: a refresh is the only way forward
  }
}

export function createBrowserSession(options: {
  oidc: OidcClient;
  secretBox: SecretBox;
  baseUrl: string;
  /** Origins besides BASEURL's whose pages may change things with the session cookie (CSRF_TRUSTED_ORIGINS). */
  trustedOrigins: string[];
}): BrowserSession {
  const { oidc, secretBox, baseUrl } = options;
  const trustedOrigins = new Set([new URL(baseUrl).origin, ...options.trustedOrigins]);
  const refreshing = new Map<string, Promise<OidcTokens>>();
  const { cookie, cleared, clearedSession } = sessionCookieJar(baseUrl);

  function sessionCookies(tokens: OidcTokens, previousRefreshToken: string | null = null): string[] {
    const seconds = tokens.sessionSeconds ?? DEFAULT_SESSION_SECONDS;
    const refreshToken = tokens.refreshToken ?? previousRefreshToken;
    return [
      cookie(SESSION_COOKIES.access, tokens.accessToken, API_PATH, seconds),
      ...(refreshToken ? [cookie(SESSION_COOKIES.refresh, refreshToken, API_PATH, seconds)] : []),
      // Only the logout route needs the ID token (as id_token_hint), so only it receives the cookie.
      ...(tokens.idToken ? [cookie(SESSION_COOKIES.idToken, tokens.idToken, AUTH_PATH, seconds)] : []),
    ];
  }

  function readLoginState(sealed: string | undefined): LoginState | null {
    if (!sealed) return null;
    try {
      const state = loginStateSchema.parse(JSON.parse(secretBox.decrypt(sealed)));
      return state.expiresAt > Date.now() ? state : null;
    } catch {
      return null;
    }
  }

  function refreshOnce(refreshToken: string): Promise<OidcTokens> {
    // The UI fires several calls at once when the token has expired: they share one refresh.
    let pending = refreshing.get(refreshToken);
    if (!pending) {
      pending = oidc.refresh(refreshToken).finally(() => refreshing.delete(refreshToken));
      refreshing.set(refreshToken, pending);
    }
    return pending;
  }

  return {
    async beginLogin(redirect) {
      const checks = { state: randomState(), nonce: randomNonce(), codeVerifier: randomPKCECodeVerifier() };
      const location = await oidc.authorizationUrl(checks);
      const sealed = secretBox.encrypt(JSON.stringify({ ...checks, redirect, expiresAt: Date.now() + LOGIN_SECONDS * 1000 }));
      return { location: location.href, cookies: [cookie(LOGIN_COOKIE_PREFIX + checks.state, sealed, CALLBACK_PATH, LOGIN_SECONDS)] };
    },

    async completeLogin(request) {
      const url = new URL(request.url);
      const state = url.searchParams.get("state") ?? "";
      const cookieName = LOGIN_COOKIE_PREFIX + state;
      const login = /^[\w-]{1,128}$/.test(state) ? readLoginState(cookiesOf(request)[cookieName]) : null;
      if (!login || login.state !== state) {
        return { location: withLoginError("/", "invalid_state"), cookies: [], failure: "unknown, expired or tampered state" };
      }
      const done = [cleared(cookieName, CALLBACK_PATH)];
      try {
        const tokens = await oidc.exchangeCode(new URL(`${baseUrl}${CALLBACK_PATH}${url.search}`), login);
        return { location: login.redirect, cookies: [...done, ...sessionCookies(tokens)] };
      } catch (error) {
        if (error instanceof LoginRejected) return { location: withLoginError(login.redirect, error.reason), cookies: done, failure: error.message };
        if (!(error instanceof AppError)) throw error;
        const code = error.status === 503 ? "idp_unavailable" : "login_failed";
        return { location: withLoginError(login.redirect, code), cookies: done, failure: error.message };
      }
    },

    async logout(request, redirect) {
      const idToken = cookiesOf(request)[SESSION_COOKIES.idToken];
      let location = redirect;
      if (idToken) {
        try {
          const endSession = await oidc.endSessionUrl({ idToken, postLogoutRedirectUri: `${baseUrl}${redirect}` });
          if (endSession) location = endSession.href;
        } catch (error) {
          // IdP unreachable: our cookies are cleared anyway; its session ends on its own timeout.
          if (!(error instanceof AppError)) throw error;
        }
      }
      return { location, cookies: clearedSession() };
    },

    async tokenFromRequest(request, responseCookies) {
      const cookies = cookiesOf(request);
      const access = cookies[SESSION_COOKIES.access];
      const refreshToken = cookies[SESSION_COOKIES.refresh];
      if (!access && !refreshToken) return null;
      assertTrustedOrigin(request, trustedOrigins);
      if (access && !expiresSoon(access)) return access;
      if (!refreshToken) return access ?? null;
      try {
        const tokens = await refreshOnce(refreshToken);
        responseCookies.push(...sessionCookies(tokens, refreshToken));
        return tokens.accessToken;
      } catch (error) {
        if (!(error instanceof SessionEnded)) throw error;
        responseCookies.push(...clearedSession());
        throw unauthorized("Your session has ended. Sign in again.", "SESSION_EXPIRED");
      }
    },
  };
}

/** The login of /api/auth/login and /callback: those are served only when browser login is configured (routesFor). */
export function browserSessionOf(services: { browserSession: BrowserSession | null }): BrowserSession {
  if (!services.browserSession) throw new Error("A browser login route was served without browser login configured");
  return services.browserSession;
}
