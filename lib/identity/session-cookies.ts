import { parseCookie, type SetCookie, stringifySetCookie } from "cookie";

/**
 * The browser session's cookies, whoever signed the admin in (the OIDC login, the sign-in page, a test session): the
 * same names and attributes, so /api/auth/self and /api/auth/logout work the same way for all of them.
 * HttpOnly (never readable by the page's JavaScript), SameSite=Lax, Secure when BASEURL is https.
 */
export const SESSION_COOKIES = { access: "iot_access_token", refresh: "iot_refresh_token", idToken: "iot_id_token" } as const;
/** The access and refresh cookies go to every admin route; the ID token only to the logout route (id_token_hint). */
export const API_PATH = "/api";
export const AUTH_PATH = "/api/auth";

export type SessionCookieJar = {
  cookie(name: string, value: string, path: string, maxAgeSeconds: number): string;
  cleared(name: string, path: string): string;
  /** Expires every session cookie. */
  clearedSession(): string[];
};

export function sessionCookieJar(baseUrl: string): SessionCookieJar {
  const secure = baseUrl.startsWith("https:");
  const cookie = (name: string, value: string, path: string, maxAge: number) =>
    stringifySetCookie({ name, value, path, maxAge, httpOnly: true, secure, sameSite: "lax" } satisfies SetCookie);
  const cleared = (name: string, path: string) => cookie(name, "", path, 0);
  return {
    cookie,
    cleared,
    clearedSession: () => [cleared(SESSION_COOKIES.access, API_PATH), cleared(SESSION_COOKIES.refresh, API_PATH), cleared(SESSION_COOKIES.idToken, AUTH_PATH)],
  };
}

export const cookiesOf = (request: Request) => parseCookie(request.headers.get("cookie") ?? "");
