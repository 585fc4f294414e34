/** Unit tests of functions/oauth2/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLocalJWKSet, jwtVerify } from "jose";
import discovery from "../../../functions/oauth2/.well-known/openid-configuration.get.ts";
import jwks from "../../../functions/oauth2/jwks.get.ts";
import token from "../../../functions/oauth2/token.post.ts";
import { runRoute } from "../../../lib/http/app.ts";
import { expectError, request, unitApp, type UnitApp } from "../harness.ts";

const KEYCLOAK_ENV = { KEYCLOAK_BASE_URL: "http://keycloak.test", KEYCLOAK_REALM: "iot", KEYCLOAK_ADMIN_CLIENT_ID: "backend", KEYCLOAK_ADMIN_CLIENT_SECRET: "backend-secret" };

const form = (fields: Record<string, string>) => new URLSearchParams(fields);
const basic = (clientId: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString("base64")}`;

async function deviceCredentials(app: UnitApp) {
  const { device } = await app.device();
  return { clientId: device.client_id, secret: await app.identity.getSecret(device.client_id) };
}

describe("functions/oauth2/token.post.ts", () => {
  it("grants a token for credentials in the form or as HTTP Basic, uncached", async () => {
    const app = unitApp();
    const { clientId, secret } = await deviceCredentials(app);
    const inForm = await app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }) }));
    assert.equal(inForm.status, 200);
    assert.equal(inForm.headers.get("cache-control"), "no-store");
    const body = await inForm.json();
    assert.deepEqual([body.token_type, body.expires_in > 0], ["Bearer", true]);
    const asBasic = await app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials" }), headers: { authorization: basic(clientId, secret) } }));
    assert.equal(asBasic.status, 200);
  });

  it("refuses a wrong or missing secret with 401 invalid_client and a Basic challenge", async () => {
    const app = unitApp();
    const { clientId } = await deviceCredentials(app);
    const attempts: Record<string, string>[] = [{ client_id: clientId, client_secret: "wrong-secret" }, { client_id: clientId }, { client_id: "iotdevice-x-unknown", client_secret: "s" }];
    for (const fields of attempts) {
      const response = await app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials", ...fields }) }));
      assert.equal(response.headers.get("www-authenticate"), 'Basic realm="iotsupport"');
      const envelope = await expectError(response, 401, "INVALID_CLIENT");
      assert.equal(envelope.error, "invalid_client");
    }
    const malformed = await app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials" }), headers: { authorization: `Basic ${Buffer.from("no-colon").toString("base64")}` } }));
    await expectError(malformed, 401, "INVALID_CLIENT");
  });

  it("refuses a bad request with 400 and the OAuth2 error code", async () => {
    const app = unitApp();
    const { clientId, secret } = await deviceCredentials(app);
    const post = (fields: Record<string, string>, headers: Record<string, string> = {}) => app.run(token, request("POST", "/oauth2/token", { body: form(fields), headers }));
    await expectError(await post({ client_id: clientId, client_secret: secret }), 400, "INVALID_REQUEST");
    await expectError(await post({ grant_type: "password", client_id: clientId, client_secret: secret }), 400, "UNSUPPORTED_GRANT_TYPE");
    await expectError(await post({ grant_type: "client_credentials", client_secret: secret }, { authorization: basic(clientId, secret) }), 400, "INVALID_REQUEST");
    await expectError(await post({ grant_type: "client_credentials", client_id: "someone-else" }, { authorization: basic(clientId, secret) }), 400, "INVALID_REQUEST");
    const json = await app.run(token, request("POST", "/oauth2/token", { body: { grant_type: "client_credentials" } }));
    await expectError(json, 415, "UNSUPPORTED_MEDIA_TYPE");
  });

  it("after OAUTH2_CLIENT_FAILURE_LIMIT failures: 429 temporarily_unavailable with Retry-After, yet the right secret still works", async () => {
    const app = unitApp({ env: { OAUTH2_CLIENT_FAILURE_LIMIT: "2" } });
    const { clientId, secret } = await deviceCredentials(app);
    const attempt = (candidate: string) => app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials", client_id: clientId, client_secret: candidate }) }));
    await attempt("wrong-1");
    await attempt("wrong-2");
    const refused = await attempt("wrong-3");
    assert.ok(Number(refused.headers.get("retry-after")) > 0);
    assert.equal((await expectError(refused, 429, "TOO_MANY_FAILED_ATTEMPTS")).error, "temporarily_unavailable");
    assert.equal((await attempt(secret)).status, 200);
  });

  it("is served with either provider: with Keycloak it passes the grant through (test/auth-keycloak.test.ts)", () => {
    assert.deepEqual([unitApp().serves(token), unitApp({ env: KEYCLOAK_ENV }).serves(token)], [true, true]);
  });
});

describe("functions/oauth2/jwks.get.ts", () => {
  it("publishes the key that verifies the granted tokens, cacheable", async () => {
    const app = unitApp();
    const { clientId, secret } = await deviceCredentials(app);
    const granted = await (await app.run(token, request("POST", "/oauth2/token", { body: form({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }) }))).json();
    const response = await app.run(jwks, request("GET", "/oauth2/jwks"));
    assert.equal(response.headers.get("cache-control"), "public, max-age=300");
    const { payload } = await jwtVerify(granted.access_token, createLocalJWKSet(await response.json()), { issuer: "http://iot.test/oauth2" });
    assert.equal(payload.azp, clientId);
  });

  it("is served while the built-in provider issues the device tokens, not with Keycloak", () => {
    assert.deepEqual([unitApp().serves(jwks), unitApp({ env: KEYCLOAK_ENV }).serves(jwks)], [true, false]);
  });
});

describe("functions/oauth2/.well-known/openid-configuration.get.ts", () => {
  it("describes the built-in provider's endpoints", async () => {
    const { edge, services } = unitApp();
    const response = await runRoute(discovery, request("GET", "/oauth2/.well-known/openid-configuration"), { ...edge, builtinIssuer: services.builtinIssuer });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual([body.issuer, body.token_endpoint, body.jwks_uri], ["http://iot.test/oauth2", "http://iot.test/oauth2/token", "http://iot.test/oauth2/jwks"]);
    assert.deepEqual(body.grant_types_supported, ["client_credentials"]);
  });

  it("is served while the built-in provider issues the device tokens, not with Keycloak", () => {
    assert.deepEqual([unitApp().serves(discovery), unitApp({ env: KEYCLOAK_ENV }).serves(discovery)], [true, false]);
  });
});
