/** Unit tests of functions/api/auth/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import callback from "../../../../functions/api/auth/callback.get.ts";
import login from "../../../../functions/api/auth/login.get.ts";
import logout from "../../../../functions/api/auth/logout.get.ts";
import self from "../../../../functions/api/auth/self.get.ts";
import { NON_ADMIN_TOKEN } from "../../../support/fakes/auth.ts";
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

  it("is served only when browser login is configured", () => {
    assert.deepEqual([unitApp({ browserLogin: true }).serves(login), unitApp().serves(login)], [true, false]);
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

  it("without browser login goes straight back to the (safe) path", async () => {
    const { edge } = unitApp();
    const run = (path: string) => runRoute(logout, request("GET", path), { ...edge, browserSession: null });
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
