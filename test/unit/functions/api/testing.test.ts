/** Unit tests of functions/api/testing/** (one describe per route file): TESTING_MODE only. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSetCookie } from "cookie";
import self from "../../../../functions/api/auth/self.get.ts";
import listModels from "../../../../functions/api/device-models/index.get.ts";
import clear from "../../../../functions/api/testing/auth/clear.post.ts";
import forceError from "../../../../functions/api/testing/auth/force-error.post.ts";
import session from "../../../../functions/api/testing/auth/session.post.ts";
import cleanup from "../../../../functions/api/testing/keycloak-cleanup.post.ts";
import { ACCESS_COOKIE } from "../../../support/fakes/browser-session.ts";
import { asAdmin, expectError, request, type UnitApp, unitApp } from "../../harness.ts";

const testingApp = () => unitApp({ env: { TESTING_MODE: "true" } });
const TESTING_ROUTES = [session, clear, forceError, cleanup];

/** Signs in as `user` through the session route; the cookie header that then carries the session. */
async function signIn(app: UnitApp, user: Record<string, unknown>): Promise<string> {
  const response = await app.run(session, request("POST", "/api/testing/auth/session", { body: user }));
  assert.equal(response.status, 201);
  const cookie = parseSetCookie(response.headers.get("set-cookie") ?? "");
  return `${cookie.name}=${cookie.value}`;
}

describe("testing routes without TESTING_MODE", () => {
  it("are not served (404 like any unknown route), and not in the API document", () => {
    const app = unitApp();
    assert.equal(app.services.testing, null);
    for (const route of TESTING_ROUTES) assert.equal(app.serves(route), false, route.path);
    for (const route of TESTING_ROUTES) assert.equal(testingApp().serves(route), true, route.path);
  });
});

describe("functions/api/testing/auth/session.post.ts", () => {
  it("creates a session for any user: 201 with the user, an HttpOnly cookie, and /api/auth/self names them", async () => {
    const app = testingApp();
    const response = await app.run(session, request("POST", "/api/testing/auth/session", { body: { subject: "u-1", name: "Test User", email: "t@example.test", roles: ["admin"] } }));
    assert.equal(response.status, 201);
    assert.deepEqual(await response.json(), { subject: "u-1", name: "Test User", email: "t@example.test", roles: ["admin"] });
    const cookie = parseSetCookie(response.headers.get("set-cookie") ?? "");
    assert.equal(cookie.name, ACCESS_COOKIE);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.path, "/api");

    const me = await app.run(self, request("GET", "/api/auth/self", { headers: { cookie: `${cookie.name}=${cookie.value}` } }));
    assert.deepEqual(await me.json(), { subject: "u-1", email: "t@example.test", name: "Test User", roles: ["admin"] });
  });

  it("name and email default to null and roles to none; admin routes then answer 403, with the admin role 200", async () => {
    const app = testingApp();
    const response = await app.run(session, request("POST", "/api/testing/auth/session", { body: { subject: "plain" } }));
    assert.deepEqual(await response.json(), { subject: "plain", name: null, email: null, roles: [] });
    const plain = await signIn(app, { subject: "plain", name: null });
    await expectError(await app.run(listModels, request("GET", "/api/device-models", { headers: { cookie: plain } })), 403, "FORBIDDEN");
    const admin = await signIn(app, { subject: "boss", roles: ["admin"] });
    // No Origin header, as the UI suite's API client sends none: a test session is not origin-checked.
    const models = await app.run(listModels, request("GET", "/api/device-models", { headers: { cookie: admin } }));
    assert.equal(models.status, 200);
  });

  it("refuses a body without a subject", async () => {
    await expectError(await testingApp().run(session, request("POST", "/api/testing/auth/session", { body: { name: "x" } })), 400, "VALIDATION_FAILED");
  });
});

describe("functions/api/testing/auth/clear.post.ts", () => {
  it("forgets the session and expires the cookie: the old cookie signs nobody in", async () => {
    const app = testingApp();
    const cookie = await signIn(app, { subject: "u", roles: ["admin"] });
    const response = await app.run(clear, request("POST", "/api/testing/auth/clear", { headers: { cookie } }));
    assert.equal(response.status, 204);
    assert.equal(parseSetCookie(response.headers.get("set-cookie") ?? "").maxAge, 0);
    await expectError(await app.run(self, request("GET", "/api/auth/self", { headers: { cookie } })), 401, "UNAUTHORIZED");
    assert.equal((await app.run(clear, request("POST", "/api/testing/auth/clear"))).status, 204, "without a session too");
  });
});

describe("functions/api/testing/auth/force-error.post.ts", () => {
  it("the next single /api/auth/self answers the status asked for, with error and message; the next one as usual", async () => {
    const app = testingApp();
    const cookie = await signIn(app, { subject: "u", name: "Retry User" });
    assert.equal((await app.run(forceError, request("POST", "/api/testing/auth/force-error?status=500"))).status, 204);
    const failed = await app.run(self, request("GET", "/api/auth/self", { headers: { cookie } }));
    assert.equal(failed.status, 500);
    const body = await failed.json();
    assert.equal(body.code, "TESTING_FORCED_ERROR");
    assert.equal(body.correlationId, failed.headers.get("x-request-id"));
    assert.match(body.error, /forced for a test/);
    assert.equal(body.message, body.error, "the UI suite's shape: error and message");
    const next = await app.run(self, request("GET", "/api/auth/self", { headers: { cookie } }));
    assert.equal((await next.json()).name, "Retry User");

    await app.run(forceError, request("POST", "/api/testing/auth/force-error?status=401"));
    await expectError(await app.run(self, asAdmin("GET", "/api/auth/self")), 401, "TESTING_FORCED_ERROR");
  });

  it("takes only an error status", async () => {
    const app = testingApp();
    for (const status of ["200", "600", "abc", ""]) {
      await expectError(await app.run(forceError, request("POST", `/api/testing/auth/force-error?status=${status}`)), 400, "VALIDATION_FAILED");
    }
    assert.equal((await app.run(self, asAdmin("GET", "/api/auth/self"))).status, 200, "nothing was forced");
  });
});

describe("functions/api/testing/keycloak-cleanup.post.ts", () => {
  it("deletes the device clients whose whole client id matches, and only those", async () => {
    const app = testingApp();
    const doomed = await app.device({}, (await app.model("playwright_a")).id);
    const kept = await app.device({}, (await app.model("other")).id);
    const response = await app.run(cleanup, request("POST", "/api/testing/keycloak-cleanup", { body: { pattern: "iotdevice-playwright_.*" } }));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { deleted_count: 1, deleted_client_ids: [doomed.device.client_id] });
    assert.equal((await app.services.identity.status(doomed.device.client_id)).exists, false);
    assert.equal((await app.services.identity.status(kept.device.client_id)).exists, true);

    const partial = await app.run(cleanup, request("POST", "/api/testing/keycloak-cleanup", { body: { pattern: "other" } }));
    assert.deepEqual(await partial.json(), { deleted_count: 0, deleted_client_ids: [] }, "a pattern matches the whole id, not a part");
  });

  it("refuses a pattern that is not a regular expression", async () => {
    const app = testingApp();
    await expectError(await app.run(cleanup, request("POST", "/api/testing/keycloak-cleanup", { body: { pattern: "([" } })), 400, "VALIDATION_FAILED");
    await expectError(await app.run(cleanup, request("POST", "/api/testing/keycloak-cleanup", { body: {} })), 400, "VALIDATION_FAILED");
  });
});
