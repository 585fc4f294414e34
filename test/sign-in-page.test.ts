/**
 * The sign-in page without an OIDC provider, on a real listening server, driven the way a browser drives it: the page,
 * the form post with the browser's Origin header, the session cookie alone on the admin API, logout; and the ways it
 * must refuse (wrong token, guessing, another origin, a foreign redirect).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseSetCookie } from "cookie";
import { createLogger } from "../lib/logger.ts";
import { cookieHeader, type Jar, remember } from "./support/browser-login.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { ADMIN_TOKEN } from "./support/tokens.ts";

describe("sign-in page (no OIDC provider) on a real server", () => {
  let server: TestServer;
  const logLines: string[] = [];

  /** A browser at `address` (the proxy in front says so in X-Forwarded-For; TRUST_PROXY_HOPS=1). */
  const browser = (address: string) => {
    const jar: Jar = new Map();
    const send = async (method: string, path: string, init: { form?: Record<string, string>; json?: unknown; origin?: string | null } = {}) => {
      const headers: Record<string, string> = { "x-forwarded-for": address, accept: "text/html,application/json" };
      if (jar.size) headers.cookie = cookieHeader(jar);
      const origin = init.origin === undefined ? server.url : init.origin;
      if (origin !== null && method !== "GET") headers.origin = origin;
      let body: string | undefined;
      if (init.form) {
        headers["content-type"] = "application/x-www-form-urlencoded";
        body = new URLSearchParams(init.form).toString();
      } else if (init.json !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(init.json);
      }
      const response = await fetch(server.url + path, { method, headers, body, redirect: "manual" });
      remember(jar, response);
      return response;
    };
    const signIn = (token: string, redirect = "/devices") => send("POST", "/api/auth/login", { form: { token, redirect } });
    return { jar, send, signIn };
  };

  before(async () => {
    server = await startTestServer({
      env: { TRUST_PROXY_HOPS: "1", SIGN_IN_FAILURE_LIMIT: "3", SIGN_IN_FAILURE_WINDOW_SECONDS: "600", LOG_LEVEL: "debug" },
      overrides: { logger: createLogger("debug", {}, (line) => logLines.push(line)) },
    });
  });
  after(() => server?.close());

  test("an admin signs in on the page; the cookie alone then opens the admin API, and logout ends it", async () => {
    const { jar, send, signIn } = browser("198.51.100.1");
    const page = await send("GET", "/api/auth/login?redirect=%2Fdevices");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy") ?? "", /^default-src 'none'/);
    assert.match(await page.text(), /name="redirect" value="\/devices"/);

    const signedIn = await signIn(ADMIN_TOKEN);
    assert.equal(signedIn.status, 303);
    assert.equal(signedIn.headers.get("location"), "/devices");
    const cookie = parseSetCookie(signedIn.headers.getSetCookie()[0] ?? "");
    assert.equal(cookie.name, "iot_access_token");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "lax");
    assert.equal(cookie.path, "/api");
    assert.notEqual(cookie.secure, true, "no Secure flag on an http:// BASEURL");
    assert.ok(jar.has("iot_access_token"));

    const self = await send("GET", "/api/auth/self");
    assert.equal(self.status, 200);
    assert.deepEqual(await self.json(), { subject: "admin-api-token", email: null, name: "Admin API token", roles: ["admin"] });
    const created = await send("POST", "/api/device-models", { json: { code: "signin_page", name: "Signed in" } });
    assert.equal(created.status, 201, "a change from the UI's own origin, by the cookie alone");
    const crossSite = await send("POST", "/api/device-models", { json: { code: "evil", name: "Evil" }, origin: "https://evil.example" });
    assert.equal((await assertErrorEnvelope(crossSite, 403, "cookie from another origin")).code, "CSRF_ORIGIN_REFUSED");

    const logout = await send("GET", "/api/auth/logout?redirect=%2F");
    assert.equal(logout.status, 302);
    assert.equal(logout.headers.get("location"), "/");
    assert.equal(jar.has("iot_access_token"), false, "logout expires the cookie");
    assert.equal((await assertErrorEnvelope(await send("GET", "/api/auth/self"), 401, "after logout")).code, "UNAUTHORIZED");
  });

  test("a foreign redirect target becomes /, as with the OIDC login", async () => {
    for (const target of ["https://evil.example/", "//evil.example", "/\\evil.example", "/%2F%2Fevil.example", "javascript:alert(1)"]) {
      const response = await browser("198.51.100.2").signIn(ADMIN_TOKEN, target);
      assert.equal(response.status, 303);
      assert.equal(response.headers.get("location"), "/", target);
    }
  });

  test("a cookie that was tampered with, or made for another admin token, signs nobody in", async () => {
    const { jar, send, signIn } = browser("198.51.100.3");
    await signIn(ADMIN_TOKEN);
    const sealed = jar.get("iot_access_token")!;
    jar.set("iot_access_token", `${sealed.slice(0, 40)}${sealed[40] === "A" ? "B" : "A"}${sealed.slice(41)}`);
    await assertErrorEnvelope(await send("GET", "/api/auth/self"), 401, "tampered cookie");
    jar.set("iot_access_token", ADMIN_TOKEN);
    await assertErrorEnvelope(await send("GET", "/api/device-models"), 401, "the raw token is not a session cookie");

    // The same database and SECRET_ENCRYPTION_KEY, but ADMIN_API_TOKEN changed: the old sessions end.
    jar.set("iot_access_token", sealed);
    const renewed = await startTestServer({ databaseUrl: server.databaseUrl, env: { ADMIN_API_TOKEN: "another-admin-token-0123456789" } });
    try {
      const self = await fetch(`${renewed.url}/api/auth/self`, { headers: { cookie: cookieHeader(jar) } });
      await assertErrorEnvelope(self, 401, "a session of the previous admin token");
    } finally {
      await renewed.close();
    }
  });

  test("guessing is throttled per address: after the limit even the right token goes back to the page; other addresses are not affected", async () => {
    const guesser = browser("203.0.113.7");
    for (let i = 0; i < 3; i++) {
      const response = await guesser.signIn(`wrong-guess-${i}`);
      assert.equal(response.headers.get("location"), "/api/auth/login?redirect=%2Fdevices&error=invalid_token");
    }
    const refused = await guesser.signIn(ADMIN_TOKEN);
    assert.equal(refused.status, 303);
    assert.match(refused.headers.get("location")!, /^\/api\/auth\/login\?redirect=%2Fdevices&error=too_many_attempts&retry_after=\d+$/);
    assert.equal(guesser.jar.size, 0, "no cookie while the address is locked out");
    const page = await guesser.send("GET", refused.headers.get("location")!);
    assert.match(await page.text(), /Too many failed sign-ins from your address/);

    const neighbour = browser("203.0.113.8");
    assert.equal((await neighbour.signIn(ADMIN_TOKEN)).headers.get("location"), "/devices");
    assert.ok(logLines.some((line) => line.includes("Sign-ins refused for a while") && line.includes("203.0.113.7")));
  });

  test("a form posted from another origin is refused before the token is looked at", async () => {
    const { jar, send } = browser("198.51.100.4");
    const response = await send("POST", "/api/auth/login", { form: { token: ADMIN_TOKEN, redirect: "/devices" }, origin: "https://evil.example" });
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/api/auth/login?redirect=%2Fdevices&error=untrusted_origin");
    assert.equal(jar.size, 0);
  });

  test("neither the admin token nor a wrong guess ever reaches the log", () => {
    assert.ok(logLines.some((line) => line.includes("Admin signed in on the sign-in page")), "sign-ins are logged");
    for (const secret of [ADMIN_TOKEN, "wrong-guess-0"]) assert.ok(!logLines.some((line) => line.includes(secret)), secret);
  });
});
