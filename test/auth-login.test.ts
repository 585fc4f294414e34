/**
 * The web UI's browser login (backend-for-frontend) against the real Keycloak: login → Keycloak's login form →
 * callback → HttpOnly cookies → admin API with only the cookie; refresh, logout, and the ways it must refuse.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseSetCookie, type SetCookie } from "cookie";
import { decodeJwt } from "jose";
import { createTestApp, type TestApp } from "./support/app.ts";
import { browserLogin, cookieHeader, type Jar, remember } from "./support/browser-login.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { unsignedJwt } from "./support/jwt.ts";
import { type KeycloakTestSettings, passwordToken, requireKeycloak } from "./support/keycloak.ts";

const BASE = "http://127.0.0.1:43217"; // matches the iot-backend client's redirect URI http://127.0.0.1:*

const setCookies = (response: Response): Map<string, SetCookie> =>
  new Map(response.headers.getSetCookie().map((line) => [parseSetCookie(line).name, parseSetCookie(line)]));

const fakeExpiredJwt = () => unsignedJwt({ sub: "x", exp: Math.floor(Date.now() / 1000) - 3600 });

describe("browser login (BFF) with Keycloak", () => {
  let keycloak: KeycloakTestSettings;
  let app: TestApp;

  const { get, throughKeycloak, signIn } = browserLogin((request) => app.fetch(request), BASE);

  before(async () => {
    keycloak = await requireKeycloak();
    app = await createTestApp({
      env: {
        BASEURL: BASE,
        OIDC_ISSUER_URL: keycloak.issuer,
        OIDC_CLIENT_ID: keycloak.adminClientId,
        OIDC_CLIENT_SECRET: keycloak.adminClientSecret,
        OIDC_AUDIENCE: keycloak.audience,
      },
    });
  });
  after(() => app?.close());

  test("login sends the browser to Keycloak with code + PKCE S256, state and nonce, in an encrypted cookie", async () => {
    const response = await get("/api/auth/login?redirect=/devices");
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const location = new URL(response.headers.get("location")!);
    assert.equal(`${location.origin}${location.pathname}`, `${keycloak.issuer}/protocol/openid-connect/auth`);
    const params = location.searchParams;
    assert.equal(params.get("response_type"), "code");
    assert.equal(params.get("client_id"), keycloak.adminClientId);
    assert.equal(params.get("redirect_uri"), `${BASE}/api/auth/callback`);
    assert.equal(params.get("code_challenge_method"), "S256");
    assert.match(params.get("code_challenge") ?? "", /^[\w-]{43}$/);
    assert.match(params.get("scope") ?? "", /\bopenid\b/);
    const state = params.get("state")!;
    assert.ok(state.length >= 32 && (params.get("nonce") ?? "").length >= 32);

    const cookie = setCookies(response).get(`iot_login_${state}`);
    assert.ok(cookie, "the login cookie is named after the state");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "lax");
    assert.equal(cookie.path, "/api/auth/callback");
    assert.equal(cookie.maxAge, 600);
    assert.notEqual(cookie.secure, true, "no Secure flag on an http:// BASEURL");
    assert.doesNotMatch(cookie.value ?? "", /devices|nonce|verifier/, "the saved redirect and PKCE verifier are encrypted");
  });

  test("an admin signs in; the cookies alone then open the admin API", async () => {
    const { callback, jar } = await signIn(keycloak.users.admin);
    assert.equal(callback.status, 302);
    assert.equal(callback.headers.get("location"), "/devices");
    const cookies = setCookies(callback);
    for (const [name, path] of [["iot_access_token", "/api"], ["iot_refresh_token", "/api"], ["iot_id_token", "/api/auth"]] as const) {
      const cookie = cookies.get(name);
      assert.ok(cookie?.value, `${name} is set`);
      assert.equal(cookie.httpOnly, true, `${name} is HttpOnly`);
      assert.equal(cookie.sameSite, "lax", `${name} is SameSite=Lax`);
      assert.equal(cookie.path, path, `${name} path`);
      assert.ok((cookie.maxAge ?? 0) > 0, `${name} lasts as long as the Keycloak session`);
    }
    assert.ok([...cookies.keys()].some((name) => name.startsWith("iot_login_") && cookies.get(name)!.maxAge === 0), "the login cookie is cleared");

    const self = await get("/api/auth/self", jar);
    assert.equal(self.status, 200);
    const user = await self.json();
    const bearer = await passwordToken(keycloak.users.admin.username, keycloak.users.admin.password);
    assert.equal(user.subject, decodeJwt(bearer.accessToken!).sub);
    assert.equal(user.email, "iotadmin@example.test");
    assert.equal(user.name, "IoT Admin");
    assert.ok(user.roles.includes("admin"));

    const models = await get("/api/device-models", jar);
    assert.equal(models.status, 200);
    assert.deepEqual(await models.json(), { device_models: [], count: 0 });

    const viaBearer = await get("/api/auth/self", new Map(), { authorization: `Bearer ${bearer.accessToken}` });
    assert.equal(viaBearer.status, 200);
    assert.equal((await viaBearer.json()).subject, user.subject);
  });

  test("a signed-in user without the admin role sees who they are but gets 403 from the admin API", async () => {
    const { callback, jar } = await signIn(keycloak.users.viewer);
    assert.equal(callback.headers.get("location"), "/devices");
    const self = await get("/api/auth/self", jar);
    assert.equal(self.status, 200);
    const user = await self.json();
    assert.equal(user.email, "iotviewer@example.test");
    assert.ok(!user.roles.includes("admin"));
    await assertErrorEnvelope(await get("/api/device-models", jar), 403, "viewer → admin API");
  });

  test("nobody signed in: /api/auth/self is 401 in the envelope", async () => {
    const body = await assertErrorEnvelope(await get("/api/auth/self"), 401, "self without cookie");
    assert.equal(body.code, "UNAUTHORIZED");
    await assertErrorEnvelope(await get("/api/device-models", new Map([["iot_access_token", "garbage"]])), 401, "garbage cookie, no refresh");
  });

  test("an expired or garbage access cookie is refreshed from the refresh cookie on the same response", async () => {
    const { jar } = await signIn(keycloak.users.admin);
    const oldAccess = jar.get("iot_access_token")!;
    for (const stale of ["garbage", fakeExpiredJwt()]) {
      const staleJar = new Map(jar).set("iot_access_token", stale);
      const response = await get("/api/device-models", staleJar);
      assert.equal(response.status, 200, `refreshed past a ${stale === "garbage" ? "garbage" : "expired"} token`);
      const renewed = setCookies(response).get("iot_access_token");
      assert.ok(renewed?.value && renewed.value !== oldAccess, "a new access cookie is set");
      assert.equal(renewed.httpOnly, true);
      assert.equal(renewed.path, "/api");
      assert.ok(decodeJwt(renewed.value).exp! > Date.now() / 1000);
      assert.ok(setCookies(response).get("iot_refresh_token")?.value, "the refresh cookie is renewed too");

      const withNewCookie = await get("/api/device-models", new Map([["iot_access_token", renewed.value]]));
      assert.equal(withNewCookie.status, 200, "the new access cookie works on its own");
    }
    const self = await get("/api/auth/self", new Map(jar).set("iot_access_token", "garbage"));
    assert.equal(self.status, 200, "self refreshes as well");
    assert.ok(setCookies(self).get("iot_access_token")?.value);
  });

  test("a refresh the IdP refuses is a 401 that clears the session cookies", async () => {
    const jar: Jar = new Map([["iot_access_token", "garbage"], ["iot_refresh_token", "not-a-refresh-token"]]);
    const response = await get("/api/device-models", jar);
    const body = await assertErrorEnvelope(response, 401, "refused refresh");
    assert.equal(body.code, "SESSION_EXPIRED");
    const cookies = setCookies(response);
    for (const name of ["iot_access_token", "iot_refresh_token", "iot_id_token"]) assert.equal(cookies.get(name)?.maxAge, 0, `${name} cleared`);
  });

  test("a tampered state is refused: back to / with login_error and no session", async () => {
    const { appJar, callbackUrl } = await throughKeycloak(keycloak.users.admin, "/devices");
    const tampered = new URL(callbackUrl);
    tampered.searchParams.set("state", `${callbackUrl.searchParams.get("state")}x`);
    const response = await get(`${tampered.pathname}${tampered.search}`, appJar);
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/?login_error=invalid_state");
    assert.equal(setCookies(response).has("iot_access_token"), false);

    const withoutCookie = await get(`${callbackUrl.pathname}${callbackUrl.search}`);
    assert.equal(withoutCookie.headers.get("location"), "/?login_error=invalid_state", "the login cookie is required");
  });

  test("an error from the IdP (access_denied) goes back to the saved page with the error flag", async () => {
    const login = await get("/api/auth/login?redirect=/devices/3");
    const state = new URL(login.headers.get("location")!).searchParams.get("state")!;
    const query = new URLSearchParams({ error: "access_denied", state, iss: keycloak.issuer });
    const response = await get(`/api/auth/callback?${query}`, remember(new Map(), login));
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "/devices/3?login_error=access_denied");
    assert.equal(setCookies(response).has("iot_access_token"), false);
  });

  test("open-redirect attempts fall back to /", async () => {
    const { callback } = await signIn(keycloak.users.admin, "https://evil.example/steal");
    assert.equal(callback.headers.get("location"), "/");
    for (const target of ["//evil.example", "/\\evil.example", "/%2F%2Fevil.example", "javascript:alert(1)"]) {
      const response = await get(`/api/auth/logout?redirect=${encodeURIComponent(target)}`);
      assert.equal(response.status, 302);
      assert.equal(response.headers.get("location"), "/", target);
    }
  });

  test("logout clears the cookies and ends the Keycloak session", async () => {
    const { jar, keycloakJar } = await signIn(keycloak.users.admin);
    const response = await get("/api/auth/logout?redirect=/bye", jar);
    assert.equal(response.status, 302);
    const location = new URL(response.headers.get("location")!);
    assert.equal(`${location.origin}${location.pathname}`, `${keycloak.issuer}/protocol/openid-connect/logout`);
    assert.equal(location.searchParams.get("post_logout_redirect_uri"), `${BASE}/bye`);
    assert.equal(location.searchParams.get("id_token_hint"), jar.get("iot_id_token"));
    const cookies = setCookies(response);
    for (const name of ["iot_access_token", "iot_refresh_token", "iot_id_token"]) assert.equal(cookies.get(name)?.maxAge, 0, `${name} cleared`);
    assert.equal(remember(new Map(jar), response).size, 0);

    const atKeycloak = await fetch(location, { redirect: "manual", headers: { cookie: cookieHeader(keycloakJar) } });
    assert.equal(atKeycloak.status, 302, "Keycloak logs out without asking (id_token_hint)");
    assert.equal(atKeycloak.headers.get("location"), `${BASE}/bye`);

    const stale = await get("/api/device-models", new Map(jar).set("iot_access_token", "garbage"));
    assert.equal((await assertErrorEnvelope(stale, 401, "refresh after logout")).code, "SESSION_EXPIRED");
  });

  test("an https BASEURL marks the cookies Secure", async () => {
    const secureApp = await createTestApp({
      env: { BASEURL: "https://iot.example", OIDC_ISSUER_URL: keycloak.issuer, OIDC_CLIENT_ID: keycloak.adminClientId, OIDC_CLIENT_SECRET: keycloak.adminClientSecret },
    });
    try {
      const response = await secureApp.fetch(new Request("https://iot.example/api/auth/login"));
      assert.equal(response.status, 302);
      assert.equal(new URL(response.headers.get("location")!).searchParams.get("redirect_uri"), "https://iot.example/api/auth/callback");
      const [cookie] = setCookies(response).values();
      assert.equal(cookie?.secure, true);
    } finally {
      await secureApp.close();
    }
  });

  test("without OIDC client settings, the callback is neither served nor documented, login is the sign-in page, and logout just goes back", async () => {
    const plain = await createTestApp();
    try {
      const body = await assertErrorEnvelope(await plain.call("GET", "/api/auth/callback?code=x&state=y", { token: null }), 404, "callback");
      assert.equal(body.code, "ROUTE_NOT_FOUND");
      const page = await plain.call("GET", "/api/auth/login?redirect=/devices", { token: null });
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
      const document = await (await plain.call("GET", "/api/docs/openapi.json", { token: null })).json();
      assert.ok(document.paths["/api/auth/login"].post, "the sign-in form is documented");
      assert.equal(document.paths["/api/auth/callback"], undefined);
      const anonymous = await assertErrorEnvelope(await plain.call("GET", "/api/auth/self", { token: null }), 401, "self without a session");
      assert.equal(anonymous.code, "UNAUTHORIZED");
      const logout = await plain.call("GET", "/api/auth/logout?redirect=/devices", { token: null });
      assert.equal(logout.status, 302);
      assert.equal(logout.headers.get("location"), "/devices");
      const self = await plain.call("GET", "/api/auth/self");
      assert.equal(self.status, 200, "the static admin token identifies too");
      assert.ok((await self.json()).roles.includes("admin"));
    } finally {
      await plain.close();
    }
  });
});
