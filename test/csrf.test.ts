/**
 * Cross-site request forgery against the browser session: a page on a sibling host of the same site (which
 * SameSite=Lax does not stop) making a signed-in admin's browser change things. Real Keycloak login, real cookies.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { browserLogin, cookieHeader, type Jar } from "./support/browser-login.ts";
import { assertErrorEnvelope, snapshotData } from "./support/envelope.ts";
import { buildImage } from "./support/firmware-image.ts";
import { requireKeycloak } from "./support/keycloak.ts";

const BASE = "http://localhost:43218"; // a redirect URI the test realm accepts (http://localhost:*)
const SIBLING = "http://evil.localhost:43218"; // same site as BASE, another origin
const UI = "http://ui.localhost:5173"; // a web UI served elsewhere, listed in CSRF_TRUSTED_ORIGINS

describe("browser session: changes only from trusted origins", () => {
  let app: TestApp;
  let jar: Jar;
  let modelId: number;
  const { signIn } = browserLogin((request) => app.fetch(request), BASE);

  const send = (method: string, path: string, headers: Record<string, string>, body?: BodyInit) =>
    app.fetch(new Request(`${BASE}${path}`, { method, headers, body }));
  const withSession = (headers: Record<string, string>, cookies = jar) => ({ cookie: cookieHeader(cookies), ...headers });

  /** What an HTML form on another page can send without a preflight: multipart/form-data with the file. */
  function firmwareForm(version: string): FormData {
    const form = new FormData();
    form.append("file", new Blob([buildImage({ version, size: 4096 })]), "app.bin");
    return form;
  }
  const upload = (headers: Record<string, string>, version: string) =>
    send("POST", `/api/device-models/${modelId}/firmware?rollout=immediate`, headers, firmwareForm(version));
  const storedVersion = async () => (await (await app.call("GET", `/api/device-models/${modelId}`)).json()).firmware_version;

  before(async () => {
    const keycloak = await requireKeycloak();
    app = await createTestApp({
      env: {
        BASEURL: BASE,
        CSRF_TRUSTED_ORIGINS: UI,
        OIDC_ISSUER_URL: keycloak.issuer,
        OIDC_CLIENT_ID: keycloak.adminClientId,
        OIDC_CLIENT_SECRET: keycloak.adminClientSecret,
        OIDC_AUDIENCE: keycloak.audience,
      },
    });
    modelId = (await (await app.call("POST", "/api/device-models", { body: { code: "csrf", name: "CSRF target" } })).json()).id;
    ({ jar } = await signIn(keycloak.users.admin));
    assert.ok(jar.get("iot_access_token") && jar.get("iot_refresh_token"), "signed in");
  });
  after(() => app?.close());

  test("a forged multipart upload from a sibling host is 403 and stores nothing", async () => {
    const before = await snapshotData(app);
    const response = await upload(withSession({ origin: SIBLING, "sec-fetch-site": "same-site" }), "forged-v1");
    const body = await assertErrorEnvelope(response, 403, "forged upload");
    assert.equal(body.code, "CSRF_ORIGIN_REFUSED");
    assert.match(body.error, /evil\.localhost/);
    assert.deepEqual(body.details, { origin: SIBLING });
    assert.equal(await storedVersion(), null);
    assert.deepEqual(await snapshotData(app), before, "no data changed");
    const { assetsDir } = app.services.config;
    assert.deepEqual(existsSync(assetsDir) ? readdirSync(assetsDir, { recursive: true }) : [], [], "no file written");
  });

  test("the same upload from the web UI's origin, or from a listed one, is stored", async () => {
    const accepted: [Record<string, string>, string][] = [
      [{ origin: BASE, "sec-fetch-site": "same-origin" }, "own-origin-v1"],
      [{ "sec-fetch-site": "same-origin" }, "fetch-metadata-v2"],
      [{ origin: UI, "sec-fetch-site": "same-site" }, "listed-ui-v3"],
    ];
    for (const [headers, version] of accepted) {
      const response = await upload(withSession(headers), version);
      assert.equal(response.status, 200, `${JSON.stringify(headers)}: ${await response.clone().text()}`);
      assert.equal(await storedVersion(), version);
    }
  });

  test("every other change is refused the same way; reads are not", async () => {
    const foreign: Record<string, string>[] = [{ origin: SIBLING }, { origin: "null" }, { "sec-fetch-site": "same-site" }, {}];
    for (const headers of foreign) {
      const label = JSON.stringify(headers);
      const json = { ...withSession(headers), "content-type": "application/json" };
      for (const response of [
        await send("PUT", `/api/device-models/${modelId}`, json, JSON.stringify({ name: "Renamed" })),
        await send("POST", "/api/devices", json, JSON.stringify({ device_model_id: modelId, config: "{}" })),
        await send("POST", "/api/rotation/trigger", withSession(headers)),
        await send("DELETE", `/api/device-models/${modelId}`, withSession(headers)),
      ]) {
        assert.equal((await assertErrorEnvelope(response, 403, label)).code, "CSRF_ORIGIN_REFUSED", label);
      }
    }
    const model = await (await app.call("GET", `/api/device-models/${modelId}`)).json();
    assert.equal(model.name, "CSRF target");
    assert.equal(model.device_count, 0);

    const read = await send("GET", "/api/device-models", withSession({ origin: SIBLING, "sec-fetch-site": "same-site" }));
    assert.equal(read.status, 200);
  });

  test("a refused request does not touch the session: no refresh, no cookies", async () => {
    const stale = new Map(jar).set("iot_access_token", "garbage");
    const refused = await send("POST", "/api/rotation/trigger", withSession({ origin: SIBLING }, stale));
    assert.equal(refused.status, 403);
    assert.deepEqual(refused.headers.getSetCookie(), []);

    const allowed = await send("POST", "/api/rotation/trigger", withSession({ origin: BASE }, stale));
    assert.equal(allowed.status, 200);
    assert.ok(allowed.headers.getSetCookie().some((line) => line.startsWith("iot_access_token=")), "the same request from the UI refreshes");
  });

  test("a Bearer request is judged by its token alone: no Origin check, cookies ignored", async () => {
    const bearer = { authorization: `Bearer ${ADMIN_TOKEN}`, origin: SIBLING };
    assert.equal((await upload(bearer, "bearer-v4")).status, 200);
    assert.equal((await upload(withSession(bearer), "bearer-v5")).status, 200, "cookie and Bearer: the Bearer decides");
    assert.equal(await storedVersion(), "bearer-v5");

    const badBearer = withSession({ authorization: "Bearer not-a-token", origin: BASE });
    await assertErrorEnvelope(await upload(badBearer, "never"), 401, "a bad Bearer does not fall back to the cookie");
  });

  test("device token requests are not cookie-authenticated and are unaffected", async () => {
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: modelId, config: "{}" } })).json();
    const secret = await app.services.identity.getSecret(device.client_id);
    const form = new URLSearchParams({ grant_type: "client_credentials", client_id: device.client_id, client_secret: secret });
    const headers = withSession({ origin: SIBLING, "content-type": "application/x-www-form-urlencoded" });
    const response = await send("POST", "/oauth2/token", headers, form);
    assert.equal(response.status, 200);
    assert.equal((await send("GET", "/iot/config", { authorization: `Bearer ${(await response.json()).access_token}`, origin: SIBLING })).status, 200);
  });
});
