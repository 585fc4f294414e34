/** The browser login (BFF) driven like a browser: our /api/auth routes, Keycloak's real login form, cookie jars. */
import assert from "node:assert/strict";

export type Jar = Map<string, string>;

/** Raw name=value of every Set-Cookie, as a browser would store it (a Max-Age=0 cookie is removed). */
export function remember(jar: Jar, response: Response): Jar {
  for (const line of response.headers.getSetCookie()) {
    const [pair = ""] = line.split(";");
    const at = pair.indexOf("=");
    const name = pair.slice(0, at).trim();
    if (/max-age=0/i.test(line) || at === pair.length - 1) jar.delete(name);
    else jar.set(name, pair.slice(at + 1));
  }
  return jar;
}

export const cookieHeader = (jar: Jar) => [...jar].map(([name, value]) => `${name}=${value}`).join("; ");

/** Login helpers for an app (its fetch) whose BASEURL is `base`, an address the test realm accepts as redirect URI. */
export function browserLogin(appFetch: (request: Request) => Promise<Response>, base: string) {
  const get = (path: string, jar: Jar = new Map(), headers: Record<string, string> = {}) =>
    appFetch(new Request(`${base}${path}`, { headers: { ...(jar.size ? { cookie: cookieHeader(jar) } : {}), ...headers } }));

  /** /api/auth/login through the app, Keycloak's real login form, up to (not through) our callback. */
  async function throughKeycloak(user: { username: string; password: string }, redirect: string) {
    const login = await get(`/api/auth/login?redirect=${encodeURIComponent(redirect)}`);
    assert.equal(login.status, 302);
    const appJar = remember(new Map(), login);
    const keycloakJar: Jar = new Map();

    const page = await fetch(login.headers.get("location")!, { redirect: "manual" });
    remember(keycloakJar, page);
    assert.equal(page.status, 200, "Keycloak shows its login page");
    const html = await page.text();
    const form = html.match(/<form[^>]*id="kc-form-login"[^>]*>/)?.[0] ?? "";
    const action = form.match(/action="([^"]+)"/)?.[1]?.replaceAll("&amp;", "&");
    assert.ok(action, "the login form has an action");

    const posted = await fetch(action, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie: cookieHeader(keycloakJar) },
      body: new URLSearchParams({ username: user.username, password: user.password, credentialId: "" }),
    });
    remember(keycloakJar, posted);
    assert.equal(posted.status, 302, "Keycloak accepts the password and redirects");
    const callbackUrl = posted.headers.get("location")!;
    assert.ok(callbackUrl.startsWith(`${base}/api/auth/callback?`), callbackUrl);
    return { login, appJar, keycloakJar, callbackUrl: new URL(callbackUrl) };
  }

  /** The whole login; `jar` then holds the session cookies as the browser would. */
  async function signIn(user: { username: string; password: string }, redirect = "/devices") {
    const flow = await throughKeycloak(user, redirect);
    const callback = await get(`${flow.callbackUrl.pathname}${flow.callbackUrl.search}`, flow.appJar);
    return { ...flow, callback, jar: remember(new Map(flow.appJar), callback) };
  }

  return { get, throughKeycloak, signIn };
}
