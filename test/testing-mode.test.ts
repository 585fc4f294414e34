/**
 * TESTING_MODE on a real listening server, as the web UI's Playwright suite uses it: off by default (404 like any
 * unknown route), a browser-style cookie flow through the test session, the forced /api/auth/self error, the device
 * client cleanup with the built-in provider and with Keycloak, and the server refusing it in production.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateFernetKey } from "../lib/secrets.ts";
import { cookieHeader, type Jar, remember } from "./support/browser-login.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { requireKeycloak } from "./support/keycloak.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { keycloakEnv, startTestServer, type TestServer } from "./support/server.ts";

const TESTING_PATHS = ["/api/testing/auth/session", "/api/testing/auth/clear", "/api/testing/auth/force-error?status=500", "/api/testing/keycloak-cleanup"];

/** A browser of the UI suite: Playwright's request context keeps the cookies and sends no Origin header. */
function browser(base: string) {
  const jar: Jar = new Map();
  const send = async (method: string, path: string, json?: unknown) => {
    const headers: Record<string, string> = {};
    if (jar.size) headers.cookie = cookieHeader(jar);
    if (json !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(base + path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json), redirect: "manual" });
    remember(jar, response);
    return response;
  };
  return { jar, send };
}

/** Creates a model with `code` and a device of it; the device's client id. */
async function deviceOfModel(server: TestServer, code: string): Promise<{ id: number; clientId: string }> {
  const model = await server.admin("POST", "/api/device-models", { code, name: code });
  assert.equal(model.status, 201);
  const device = await server.admin("POST", "/api/devices", { device_model_id: (await model.json()).id, config: "{}" });
  assert.equal(device.status, 201, await device.clone().text());
  const body = await device.json();
  return { id: body.id, clientId: body.client_id };
}

const clientExists = async (server: TestServer, deviceId: number) =>
  (await (await server.admin("GET", `/api/devices/${deviceId}/keycloak-status`)).json()).exists as boolean;

describe("testing routes off (the default)", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server?.close());

  test("answer 404 ROUTE_NOT_FOUND like any unknown route, and are not in the API document", async () => {
    for (const path of TESTING_PATHS) {
      const response = await fetch(server.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ subject: "x", pattern: ".*" }) });
      assert.equal((await assertErrorEnvelope(response, 404, path)).code, "ROUTE_NOT_FOUND");
    }
    const document = await (await fetch(`${server.url}/api/docs/openapi.json`)).json();
    assert.deepEqual(Object.keys(document.paths).filter((path) => path.startsWith("/api/testing")), []);
  });
});

describe("TESTING_MODE=true with the built-in provider", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { TESTING_MODE: "true" } });
  });
  after(() => server?.close());

  test("a test session signs a browser in: self names the user, admin routes take the cookie, clear ends it", async () => {
    const { jar, send } = browser(server.url);
    const created = await send("POST", "/api/testing/auth/session", { subject: "test-user-1", name: "Test User", roles: ["admin"] });
    assert.equal(created.status, 201);
    assert.deepEqual(await created.json(), { subject: "test-user-1", name: "Test User", email: null, roles: ["admin"] });
    assert.ok(jar.has("iot_access_token"));

    const self = await send("GET", "/api/auth/self");
    assert.deepEqual(await self.json(), { subject: "test-user-1", email: null, name: "Test User", roles: ["admin"] });
    assert.equal((await send("POST", "/api/device-models", { code: "ui_suite", name: "From the suite" })).status, 201, "no Origin header needed");
    assert.equal((await send("GET", "/api/device-models")).status, 200);

    const cleared = await send("POST", "/api/testing/auth/clear");
    assert.equal(cleared.status, 204);
    assert.equal(jar.has("iot_access_token"), false, "the cookie is expired");
    assert.equal((await assertErrorEnvelope(await send("GET", "/api/auth/self"), 401, "after clear")).code, "UNAUTHORIZED");
  });

  test("a session without the admin role sees itself but gets 403 from admin routes", async () => {
    const { send } = browser(server.url);
    await send("POST", "/api/testing/auth/session", { subject: "viewer", name: null, email: "viewer@example.test", roles: [] });
    assert.deepEqual((await (await send("GET", "/api/auth/self")).json()).roles, []);
    await assertErrorEnvelope(await send("GET", "/api/devices"), 403, "viewer on an admin route");
  });

  test("force-error: the next single /api/auth/self answers that status, with error and message; then as usual", async () => {
    const { send } = browser(server.url);
    await send("POST", "/api/testing/auth/session", { subject: "retry", name: "Retry User", roles: ["admin"] });
    assert.equal((await send("POST", "/api/testing/auth/force-error?status=503")).status, 204);
    const failed = await send("GET", "/api/auth/self");
    assert.equal(failed.status, 503);
    const body = await failed.json();
    assert.equal(body.code, "TESTING_FORCED_ERROR");
    assert.equal(body.message, body.error);
    assert.equal((await (await send("GET", "/api/auth/self")).json()).name, "Retry User");
  });

  test("keycloak-cleanup deletes the matching built-in device clients and leaves the others", async () => {
    const doomed = await deviceOfModel(server, "playwright_cleanup");
    const kept = await deviceOfModel(server, "kept_model");
    const response = await fetch(`${server.url}/api/testing/keycloak-cleanup`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ pattern: "iotdevice-playwright_.*" }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { deleted_count: 1, deleted_client_ids: [doomed.clientId] });
    assert.equal(await clientExists(server, doomed.id), false);
    assert.equal(await clientExists(server, kept.id), true);
  });
});

describe("TESTING_MODE=true with Keycloak", () => {
  let server: TestServer;
  before(async () => {
    await requireKeycloak();
    server = await startTestServer({ env: { ...keycloakEnv(), TESTING_MODE: "true" } });
  });
  after(() => server?.close());

  test("keycloak-cleanup deletes the matching Keycloak device clients and leaves the others", async () => {
    const suffix = Date.now().toString(36);
    const doomed = await deviceOfModel(server, `playwright_${suffix}`);
    const kept = await deviceOfModel(server, `kept_${suffix}`);
    try {
      const response = await fetch(`${server.url}/api/testing/keycloak-cleanup`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ pattern: `iotdevice-playwright_${suffix}-.*` }),
      });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { deleted_count: 1, deleted_client_ids: [doomed.clientId] });
      assert.equal(await clientExists(server, doomed.id), false, "gone from Keycloak");
      assert.equal(await clientExists(server, kept.id), true);
    } finally {
      for (const device of [doomed, kept]) await server.admin("DELETE", `/api/devices/${device.id}`);
    }
  });
});

describe("TESTING_MODE in production", () => {
  test("the server refuses to start, naming the setting", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "iot-testing-mode-"));
    const server = runEntry("server.ts", [], {
      cwd,
      env: bareEnv({ NODE_ENV: "production", TESTING_MODE: "true", SECRET_ENCRYPTION_KEY: generateFernetKey(), ADMIN_API_TOKEN: "an-admin-token-0123456789", PORT: "0" }),
    });
    try {
      const code = await server.exited(30_000);
      assert.notEqual(code, 0);
      assert.notEqual(code, null, "exited by itself, not by a signal");
      assert.match(server.stderr(), /TESTING_MODE: must not be true when NODE_ENV=production/);
    } finally {
      server.kill();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
