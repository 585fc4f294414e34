/**
 * Keycloak mode against the real Keycloak (`bash keycloak/start.sh`): device tokens from Keycloak on /iot, user
 * tokens on /api, and an unreachable JWKS.
 */
import { decodeJwt } from "jose";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { keycloakRealmUrls } from "../lib/identity/keycloak-urls.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { clientCredentialsToken, passwordToken, requireKeycloak } from "./support/keycloak.ts";
import { keycloakEnv } from "./support/server.ts";

const kc = await requireKeycloak();

/** Keycloak mode with admin tokens checked against `issuer`. */
const keycloakAdminEnv = (issuer = kc.issuer) => ({ ...keycloakEnv(), OIDC_ISSUER_URL: issuer });

/** A model with a fresh code (Keycloak keeps clients across test runs) and one device of it. */
async function createDevice(app: TestApp, config: string) {
  const code = `kc_${randomBytes(4).toString("hex")}`;
  const model = await (await app.call("POST", "/api/device-models", { body: { code, name: "Keycloak test" } })).json();
  const created = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config } });
  assert.equal(created.status, 201);
  const device = (await created.json()) as { id: number; client_id: string };
  const secret = await app.services.identity.getSecret(device.client_id);
  const token = await clientCredentialsToken(kc.tokenUrl, device.client_id, secret);
  assert.ok(token.accessToken, `Keycloak issues a token to ${device.client_id}`);
  return { device, token: token.accessToken };
}

async function userToken(user: { username: string; password: string }) {
  const result = await passwordToken(user.username, user.password);
  assert.ok(result.accessToken, `Keycloak issues a token to ${user.username}`);
  return result.accessToken;
}

describe("Keycloak mode", () => {
  let app: TestApp;
  let device: { id: number; client_id: string };
  let deviceToken: string;
  const config = '{"deviceName":"Keycloak sensor",  "interval": 5}';

  before(async () => {
    app = await createTestApp({ env: keycloakAdminEnv() });
    ({ device, token: deviceToken } = await createDevice(app, config));
  });
  after(async () => {
    await app.call("DELETE", `/api/devices/${device.id}`);
    await app.close();
  });

  test("a device created through the API gets a Keycloak client whose token reads the config", async () => {
    assert.equal(app.services.identity.kind, "keycloak");
    assert.equal((await app.services.identity.status(device.client_id)).exists, true);
    for (const path of ["/iot/config", "/api/iot/config"]) {
      const response = await app.call("GET", path, { token: deviceToken });
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get("cache-control"), "no-cache");
      assert.equal(await response.text(), config);
    }
    const version = await app.call("GET", "/iot/firmware-version", { token: deviceToken });
    assert.equal((await version.json()).firmware_version, null);
  });

  test("the built-in token server's keys and discovery are off; /oauth2/token passes through to Keycloak", async () => {
    for (const path of ["/oauth2/jwks", "/oauth2/.well-known/openid-configuration"]) {
      const response = await app.call("GET", path, { token: null });
      assert.equal(response.status, 404, path);
      assert.equal((await response.json()).code, "ROUTE_NOT_FOUND", path);
    }
    const document = await (await app.call("GET", "/api/docs/openapi.json", { token: null })).json();
    assert.deepEqual(Object.keys(document.paths).filter((path) => path.startsWith("/oauth2")), ["/oauth2/token"]);
    const form = (secret: string) => ({
      token: null,
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: kc.adminClientId, client_secret: secret }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    const granted = await app.call("POST", "/oauth2/token", form(kc.adminClientSecret));
    assert.equal(granted.status, 200);
    assert.equal(granted.headers.get("cache-control"), "no-store");
    assert.equal(decodeJwt((await granted.json()).access_token).azp, kc.adminClientId, "Keycloak's token, as Keycloak made it");
    const refused = await app.call("POST", "/oauth2/token", form("wrong-secret"));
    assert.equal(refused.status, 401);
    const body = await refused.json();
    assert.equal(typeof body.error, "string", "the OAuth2 error code");
    assert.equal(typeof body.code, "string", "inside the usual envelope");
  });

  test("an admin user's token opens the admin API, a viewer's is forbidden", async () => {
    const admin = await app.call("GET", "/api/device-models", { token: await userToken(kc.users.admin) });
    assert.equal(admin.status, 200);
    assert.ok((await admin.json()).count >= 1);
    const viewer = await app.call("GET", "/api/device-models", { token: await userToken(kc.users.viewer) });
    assert.equal(viewer.status, 403);
    assert.equal((await viewer.json()).code, "FORBIDDEN");
  });

  test("a device token never reaches /api and a user token never acts as a device", async () => {
    for (const path of ["/api/devices", "/api/device-models"]) {
      const response = await app.call("GET", path, { token: deviceToken });
      assert.ok(response.status === 401 || response.status === 403, `${path}: ${response.status}`);
    }
    const asDevice = await app.call("GET", "/iot/config", { token: await userToken(kc.users.admin) });
    assert.equal(asDevice.status, 401);
    assert.match((await asDevice.json()).error, /not belong to a device/);
  });

  test("a token of the backend's own service account is neither device nor admin", async () => {
    const service = await clientCredentialsToken(kc.tokenUrl, kc.adminClientId, kc.adminClientSecret);
    assert.equal((await app.call("GET", "/iot/config", { token: service.accessToken! })).status, 401);
    assert.equal((await app.call("GET", "/api/devices", { token: service.accessToken! })).status, 403);
  });
});

describe("Keycloak mode with the issuer's keys unreachable", () => {
  let app: TestApp;
  let device: { id: number; client_id: string };
  let deviceToken: string;

  before(async () => {
    app = await createTestApp({ env: keycloakAdminEnv(keycloakRealmUrls("http://127.0.0.1:1", kc.realm).issuer) });
    ({ device, token: deviceToken } = await createDevice(app, "{}"));
  });
  after(async () => {
    await app.call("DELETE", `/api/devices/${device.id}`);
    await app.close();
  });

  test("token checks answer 503, not 401", async () => {
    for (const [path, token] of [
      ["/iot/config", deviceToken],
      ["/api/device-models", await userToken(kc.users.admin)],
    ] as const) {
      const response = await app.call("GET", path, { token });
      assert.equal(response.status, 503, path);
      const body = await response.json();
      assert.equal(body.code, "UPSTREAM_UNAVAILABLE");
      assert.ok(!JSON.stringify(body).includes("127.0.0.1"), "no upstream URL in the body");
    }
    const metrics = await (await app.call("GET", "/metrics", { token: null })).text();
    assert.match(metrics, /iot_auth_validation_total\{status="unavailable"\} [1-9]/);
  });
});
