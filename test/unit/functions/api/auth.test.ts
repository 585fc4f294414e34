/** Unit tests of functions/api/auth/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import callback from "../../../../functions/api/auth/callback.get.ts";
import login from "../../../../functions/api/auth/login.get.ts";
import signIn from "../../../../functions/api/auth/login.post.ts";
import { routesFor } from "../../../../functions/index.ts";
import logout from "../../../../functions/api/auth/logout.get.ts";
import self from "../../../../functions/api/auth/self.get.ts";
import { createHash } from "node:crypto";
import { parseSetCookie } from "cookie";
import { NON_ADMIN_TOKEN } from "../../../support/fakes/auth.ts";
import { BASE_URL } from "../../../support/fakes/index.ts";
import { ADMIN_TOKEN } from "../../../support/tokens.ts";
import { ACCESS_COOKIE, IDP } from "../../../support/fakes/browser-session.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { asAdmin, expectError, request, unitApp } from "../../harness.ts";

describe("functions/api/auth/login.get.ts", () => {
  it("redirects to the identity provider, keeping a safe return path and setting the login cookie", async () => {
    const app = unitApp({ browserLogin: true });
    const response = await app.run(login, request("GET", "/api/auth/login?redirect=%2Fdevices%3Fpage%3D2"));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), `${IDP}/authorize?return=${encodeURIComponent("/devices?page=2")}`);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.match(response.headers.get("set-cookie") ?? "", /HttpOnly/);
  });

  it("never returns to another site: an outside redirect becomes /", async () => {
    const app = unitApp({ browserLogin: true });
    for (const target of ["https://evil.test/", "//evil.test", "/\\evil.test"]) {
      const response = await app.run(login, request("GET", `/api/auth/login?redirect=${encodeURIComponent(target)}`));
      assert.equal(response.headers.get("location"), `${IDP}/authorize?return=%2F`, target);
    }
  });

  it("without OIDC login, serves the sign-in page: self-contained HTML under a strict CSP, posting back here", async () => {
    const app = unitApp();
    assert.equal(app.serves(login), true);
    const response = await app.run(login, request("GET", "/api/auth/login?redirect=%2Fdevices%3Fpage%3D2"));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(response.headers.get("x-frame-options"), "DENY");
    // A real browser sends `Origin: null` with a form under no-referrer, and the origin check would refuse the sign-in.
    assert.equal(response.headers.get("referrer-policy"), "same-origin");
    const csp = response.headers.get("content-security-policy") ?? "";
    assert.match(csp, /^default-src 'none'; style-src 'sha256-[\w+/=]+'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'$/);
    const html = await response.text();
    assert.match(html, /<form method="post" action="\/api\/auth\/login">/);
    assert.match(html, /<input type="hidden" name="redirect" value="\/devices\?page=2">/);
    assert.match(html, /name="token" type="password"/);
    assert.doesNotMatch(html, /<script|src=|href=/, "no scripts and no external assets");
    const style = html.match(/<style>([\s\S]*)<\/style>/)![1]!;
    assert.ok(csp.includes(`'sha256-${createHash("sha256").update(style).digest("base64")}'`), "the CSP allows exactly the page's own style");
  });

  it("the sign-in page keeps only a safe return path, escaped, and shows only the refusals it knows", async () => {
    const app = unitApp();
    const page = async (query: string) => (await app.run(login, request("GET", `/api/auth/login?${query}`))).text();
    assert.match(await page(`redirect=${encodeURIComponent("//evil.test")}`), /name="redirect" value="\/"/);
    assert.match(await page(`redirect=${encodeURIComponent('/a"><script>')}`), /name="redirect" value="\/a%22%3E%3Cscript%3E"/);
    assert.match(await page("error=invalid_token"), /role="alert">That is not the admin API token\./);
    assert.match(await page("error=too_many_attempts&retry_after=600"), /Try again in 10 minutes\./);
    assert.doesNotMatch(await page("error=%3Cb%3Ehello"), /role="alert"|hello/);
  });

  it("is served with OIDC login or the sign-in page, and not when neither exists", () => {
    assert.deepEqual([unitApp({ browserLogin: true }).serves(login), unitApp().serves(login)], [true, true]);
    assert.equal(routesFor({ builtinIssuer: null, browserSession: null, localSignIn: null, testing: null }).includes(login), false);
  });
});

describe("functions/api/auth/login.post.ts", () => {
  const form = (fields: Record<string, string>, headers: Record<string, string> = { origin: BASE_URL }) =>
    request("POST", "/api/auth/login", { body: new URLSearchParams(fields), headers });

  it("the admin API token signs in: 303 to the safe path with the HttpOnly session cookie, which then opens the admin API", async () => {
    const app = unitApp();
    const response = await app.run(signIn, form({ token: ADMIN_TOKEN, redirect: "/devices" }));
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/devices");
    const cookie = parseSetCookie(response.headers.get("set-cookie") ?? "");
    assert.equal(cookie.name, ACCESS_COOKIE);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "lax");
    assert.equal(cookie.path, "/api");
    assert.equal(cookie.maxAge, 8 * 3600);
    assert.ok(!cookie.value!.includes(ADMIN_TOKEN), "the cookie does not carry the token");

    const me = await app.run(self, request("GET", "/api/auth/self", { headers: { cookie: `${ACCESS_COOKIE}=${cookie.value}` } }));
    assert.deepEqual(await me.json(), { subject: "admin-api-token", email: null, name: "Admin API token", roles: ["admin"] });
    assert.ok(!JSON.stringify(app.logger.lines).includes(ADMIN_TOKEN), "the token is never logged");
  });

  it("a wrong token goes back to the sign-in page with the reason, the return path kept, and no cookie", async () => {
    const app = unitApp();
    const response = await app.run(signIn, form({ token: "wrong-token-guess", redirect: "https://evil.test/" }));
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/api/auth/login?redirect=%2F&error=invalid_token");
    assert.equal(response.headers.get("set-cookie"), null);
    assert.ok(!JSON.stringify(app.logger.lines).includes("wrong-token-guess"), "a wrong token is not logged either");
  });

  it("after SIGN_IN_FAILURE_LIMIT wrong tokens, every attempt goes back with too_many_attempts, the right token too", async () => {
    const app = unitApp({ env: { SIGN_IN_FAILURE_LIMIT: "2", SIGN_IN_FAILURE_WINDOW_SECONDS: "600" } });
    for (let i = 0; i < 2; i++) {
      assert.match((await app.run(signIn, form({ token: "wrong" }))).headers.get("location")!, /error=invalid_token$/);
    }
    for (const token of ["wrong", ADMIN_TOKEN]) {
      const response = await app.run(signIn, form({ token, redirect: "/devices" }));
      assert.equal(response.status, 303);
      assert.equal(response.headers.get("location"), "/api/auth/login?redirect=%2Fdevices&error=too_many_attempts&retry_after=300");
      assert.equal(response.headers.get("set-cookie"), null);
    }
    assert.ok(app.logger.lines.some((line) => line.message.startsWith("Sign-ins refused for a while")), "the operator is told");
  });

  it("a form from a page of another origin goes back with untrusted_origin and no cookie, the token unread", async () => {
    const app = unitApp();
    for (const headers of [{ origin: "https://evil.test" }, { origin: "null" }, {}] as Record<string, string>[]) {
      const response = await app.run(signIn, form({ token: ADMIN_TOKEN, redirect: "/x" }, headers));
      assert.equal(response.status, 303);
      assert.equal(response.headers.get("location"), "/api/auth/login?redirect=%2Fx&error=untrusted_origin");
      assert.equal(response.headers.get("set-cookie"), null);
    }
    const sameOrigin = await app.run(signIn, form({ token: ADMIN_TOKEN }, { "sec-fetch-site": "same-origin" }));
    assert.equal(sameOrigin.headers.get("location"), "/", "without Origin, Sec-Fetch-Site: same-origin is enough");
    assert.ok(app.logger.lines.some((line) => line.level === "warn" && line.message.includes("CSRF_TRUSTED_ORIGINS")), "the operator learns why");
    const page = await (await app.run(login, request("GET", "/api/auth/login?error=untrusted_origin"))).text();
    assert.match(page, /CSRF_TRUSTED_ORIGINS/);
  });

  it("is refused without a token, and as anything but a form", async () => {
    const app = unitApp();
    await expectError(await app.run(signIn, form({ redirect: "/" })), 400, "VALIDATION_FAILED");
    const json = request("POST", "/api/auth/login", { body: { token: ADMIN_TOKEN }, headers: { origin: BASE_URL } });
    await expectError(await app.run(signIn, json), 415, "UNSUPPORTED_MEDIA_TYPE");
  });

  it("is served only without OIDC login", () => {
    assert.deepEqual([unitApp({ browserLogin: true }).serves(signIn), unitApp().serves(signIn)], [false, true]);
  });
});

describe("functions/api/auth/callback.get.ts", () => {
  it("sets the session cookie and goes back", async () => {
    const app = unitApp({ browserLogin: true });
    const response = await app.run(callback, request("GET", "/api/auth/callback?code=abc&state=s"));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/");
    assert.match(response.headers.get("set-cookie") ?? "", new RegExp(`^${ACCESS_COOKIE}=`));
  });

  it("a failed login goes back with login_error, and the operator's log says why", async () => {
    const app = unitApp({ browserLogin: true });
    const response = await app.run(callback, request("GET", "/api/auth/callback?error=access_denied&state=s"));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/?login_error=access_denied");
    assert.ok(app.logger.lines.some((line) => line.message === "Browser login failed" && line.fields.reason === "access_denied"));
  });

  it("is served only when browser login is configured", () => {
    assert.deepEqual([unitApp({ browserLogin: true }).serves(callback), unitApp().serves(callback)], [true, false]);
  });
});

describe("functions/api/auth/logout.get.ts", () => {
  it("clears the session and goes through the identity provider's logout", async () => {
    const app = unitApp({ browserLogin: true });
    const response = await app.run(logout, request("GET", "/api/auth/logout?redirect=/bye"));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), `${IDP}/logout?return=%2Fbye`);
    assert.match(response.headers.get("set-cookie") ?? "", /Max-Age=0/);
  });

  it("after a sign-in on the sign-in page, clears the session cookie and goes straight back", async () => {
    const response = await unitApp().run(logout, request("GET", "/api/auth/logout?redirect=/bye"));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/bye");
    const cleared = response.headers.getSetCookie().map((line) => parseSetCookie(line));
    assert.ok(cleared.some((cookie) => cookie.name === ACCESS_COOKIE && cookie.maxAge === 0 && cookie.path === "/api" && cookie.httpOnly));
  });

  it("without browser login goes straight back to the (safe) path", async () => {
    const { edge } = unitApp();
    const run = (path: string) => runRoute(logout, request("GET", path), { ...edge, browserSession: null, localSignIn: null });
    assert.equal((await run("/api/auth/logout?redirect=/bye")).headers.get("location"), "/bye");
    assert.equal((await run("/api/auth/logout?redirect=https://evil.test")).headers.get("location"), "/");
  });
});

describe("functions/api/auth/self.get.ts", () => {
  it("names the admin of a bearer token, uncached", async () => {
    const response = await unitApp().run(self, asAdmin("GET", "/api/auth/self"));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.deepEqual(await response.json(), { subject: "admin-api-token", email: null, name: "Admin API token", roles: ["admin"] });
  });

  it("answers 200 for a signed-in user without the admin role (the UI shows 'no access')", async () => {
    const body = await (await unitApp().run(self, request("GET", "/api/auth/self", { token: NON_ADMIN_TOKEN }))).json();
    assert.deepEqual(body.roles, ["user"]);
  });

  it("reads the session cookie of the browser login", async () => {
    const app = unitApp({ browserLogin: true });
    const response = await app.run(self, request("GET", "/api/auth/self", { headers: { cookie: `${ACCESS_COOKIE}=${NON_ADMIN_TOKEN}` } }));
    assert.equal((await response.json()).subject, "user-1");
  });

  it("under AUTH_DISABLED=true names a person, Local Admin, without a token", async () => {
    const response = await unitApp({ env: { AUTH_DISABLED: "true" } }).run(self, request("GET", "/api/auth/self"));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { subject: "auth-disabled", email: null, name: "Local Admin", roles: ["admin"] });
  });

  it("answers 401 when nobody is signed in or the token is not valid", async () => {
    const app = unitApp();
    await expectError(await app.run(self, request("GET", "/api/auth/self")), 401, "UNAUTHORIZED");
    await expectError(await app.run(self, request("GET", "/api/auth/self", { token: "expired" })), 401, "INVALID_TOKEN");
  });
});
