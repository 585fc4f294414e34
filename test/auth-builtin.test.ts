/**
 * Built-in provider: the /oauth2 token server, device token checks and the /iot device routes, on PostgreSQL.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { deviceModels, devices, settings } from "../db/schema.ts";
import { loadConfig } from "../lib/config.ts";
import { createServices } from "../lib/context.ts";
import { SIGNING_KEY_SETTING } from "../lib/identity/builtin-issuer.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase } from "./support/database.ts";
import { buildImage } from "./support/firmware-image.ts";

const ISSUER = "http://iot.test/oauth2";

describe("built-in OAuth2 token server and device API", () => {
  let app: TestApp;
  let device: { id: number; key: string; client_id: string; config: string };
  let secret: string;
  const config = '{ "deviceName" : "Kitchen",\n  "interval": 30 ,"ünïcode": "✓" }';

  const form = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
    app.fetch(
      new Request("http://iot.test/oauth2/token", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams(fields),
      }),
    );
  const tokenFor = async (clientId: string, clientSecret: string) => {
    const response = await form({ grant_type: "client_credentials", client_id: clientId, client_secret: clientSecret });
    assert.equal(response.status, 200);
    return (await response.json()).access_token as string;
  };
  const asDevice = (path: string, token: string) => app.call("GET", path, { token });

  /** Signs with the provider's stored key, so only the claim under test is wrong. */
  async function mint(claims: Record<string, unknown>, header: Record<string, unknown> = {}, signingKey?: CryptoKey) {
    const [row] = await app.services.database.db.select().from(settings).where(eq(settings.key, SIGNING_KEY_SETTING));
    const jwk = JSON.parse(app.services.secretBox.decrypt(row!.value)) as JWK & { kid: string };
    const now = Math.floor(Date.now() / 1000);
    const standard = { iss: ISSUER, aud: "iot-backend", sub: device.client_id, iat: now, exp: now + 300, typ: "Bearer", azp: device.client_id, client_id: device.client_id };
    return new SignJWT({ ...standard, ...claims })
      .setProtectedHeader({ alg: "RS256", kid: jwk.kid, typ: "JWT", ...header })
      .sign(signingKey ?? (await importJWK(jwk, "RS256")));
  }

  async function assertRejected(response: Response, status = 401) {
    assert.equal(response.status, status);
    const body = await response.json();
    assert.deepEqual(Object.keys(body).sort(), ["code", "correlationId", "details", "error"]);
    assert.equal(typeof body.error, "string");
    assert.ok(body.error.length > 10);
    assert.equal(body.correlationId, response.headers.get("x-request-id"));
    return body;
  }

  before(async () => {
    app = await createTestApp();
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "thermo_1", name: "Thermostat" } })).json();
    await app.call("POST", "/api/device-models", { body: { code: "other", name: "Other" } });
    const created = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config } });
    assert.equal(created.status, 201);
    device = await created.json();
    secret = await app.services.identity.getSecret(device.client_id);
  });
  after(() => app.close());

  test("client credentials in the form give a Keycloak-shaped RS256 token", async () => {
    const response = await form({ grant_type: "client_credentials", client_id: device.client_id, client_secret: secret });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const body = await response.json();
    assert.deepEqual(Object.keys(body).sort(), ["access_token", "expires_in", "not-before-policy", "refresh_expires_in", "scope", "token_type"]);
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 300);
    assert.equal(body.refresh_expires_in, 0);
    assert.equal(body["not-before-policy"], 0);

    const header = decodeProtectedHeader(body.access_token);
    assert.equal(header.alg, "RS256");
    assert.ok(header.kid);
    const claims = decodeJwt(body.access_token);
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud, "iot-backend");
    assert.equal(claims.azp, device.client_id);
    assert.equal(claims.client_id, device.client_id);
    assert.equal(claims.sub, device.client_id);
    assert.equal(claims.typ, "Bearer");
    assert.equal(claims.exp! - claims.iat!, 300);
    assert.ok(Math.abs(claims.iat! - Date.now() / 1000) < 5);
    assert.match(String(claims.jti), /^[0-9a-f-]{36}$/);
    assert.notEqual(decodeJwt(await tokenFor(device.client_id, secret)).jti, claims.jti);
  });

  test("client credentials as HTTP Basic work too, and the token reads the config verbatim", async () => {
    const basic = Buffer.from(`${encodeURIComponent(device.client_id)}:${encodeURIComponent(secret)}`).toString("base64");
    const response = await form({ grant_type: "client_credentials" }, { authorization: `Basic ${basic}` });
    assert.equal(response.status, 200);
    const token = (await response.json()).access_token;

    for (const path of ["/iot/config", "/api/iot/config"]) {
      const read = await asDevice(path, token);
      assert.equal(read.status, 200, path);
      assert.equal(read.headers.get("content-type"), "application/json");
      assert.equal(read.headers.get("cache-control"), "no-cache");
      assert.ok(read.headers.get("x-request-id"));
      assert.equal(await read.text(), config, "byte-for-byte the stored text");
    }
  });

  test("firmware-version answers the model's version, under /iot and /api/iot", async () => {
    const token = await tokenFor(device.client_id, secret);
    // firmware_version is the field existing firmware reads; the target's other fields are added beside it.
    assert.equal((await (await asDevice("/iot/firmware-version", token)).json()).firmware_version, null);
    const [model] = await app.services.database.db.select().from(deviceModels).where(eq(deviceModels.code, "thermo_1"));
    const upload = await app.fetch(
      new Request(`http://iot.test/api/device-models/${model!.id}/firmware?rollout=immediate`, {
        method: "POST",
        body: buildImage({ version: "1.4.2", size: 4096 }),
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      }),
    );
    assert.equal(upload.status, 200);
    const read = await asDevice("/api/iot/firmware-version", token);
    assert.equal(read.status, 200);
    assert.equal((await read.json()).firmware_version, "1.4.2");
  });

  test("bad credentials are 401 invalid_client, in the OAuth2 shape and the envelope", async () => {
    for (const [clientId, clientSecret] of [
      [device.client_id, `${secret}x`],
      [device.client_id, secret.slice(0, -1)],
      ["iotdevice-thermo_1-zzzzzzzz", secret],
    ] as const) {
      const response = await form({ grant_type: "client_credentials", client_id: clientId, client_secret: clientSecret });
      assert.equal(response.status, 401);
      const body = await response.json();
      assert.deepEqual(Object.keys(body).sort(), ["code", "correlationId", "details", "error", "error_description"]);
      assert.equal(body.error, "invalid_client");
      assert.equal(body.code, "INVALID_CLIENT");
      assert.equal(body.details, null);
      assert.equal(body.correlationId, response.headers.get("x-request-id"));
      assert.ok(!JSON.stringify(body).includes(secret.slice(0, 8)), "no secret in the answer");
    }
    const wrongBasic = Buffer.from(`${device.client_id}:nope`).toString("base64");
    assert.equal((await form({ grant_type: "client_credentials" }, { authorization: `Basic ${wrongBasic}` })).status, 401);
    const missing = await form({ grant_type: "client_credentials", client_id: device.client_id });
    assert.equal((await missing.json()).error, "invalid_client");
  });

  test("an unknown client_id gets exactly the answer a wrong secret gets", async () => {
    const basic = (clientId: string, clientSecret: string) => ({ authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}` });
    const unknownId = device.client_id.replace(/.{8}$/, "zzzzzzzz");
    const wrongSecret = `${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`;
    const answer = async (response: Response) => {
      const { correlationId, ...body } = await response.json();
      assert.equal(correlationId, response.headers.get("x-request-id"));
      const headers = Object.fromEntries([...response.headers].filter(([name]) => !["x-request-id", "date", "content-length"].includes(name)));
      return { status: response.status, headers, body };
    };
    const inForm = async (clientId: string) => answer(await form({ grant_type: "client_credentials", client_id: clientId, client_secret: wrongSecret }));
    const asBasic = async (clientId: string) => answer(await form({ grant_type: "client_credentials" }, basic(clientId, wrongSecret)));

    const expected = await inForm(device.client_id);
    assert.equal(expected.status, 401);
    assert.deepEqual(await inForm(unknownId), expected);
    assert.deepEqual(await asBasic(unknownId), await asBasic(device.client_id));
  });

  test("wrong grant, wrong content type and oversized bodies are refused", async () => {
    const password = await form({ grant_type: "password", client_id: device.client_id, client_secret: secret, username: "x", password: "y" });
    assert.equal(password.status, 400);
    assert.deepEqual(
      { ...(await password.json()), correlationId: null, error_description: null },
      { error: "unsupported_grant_type", error_description: null, code: "UNSUPPORTED_GRANT_TYPE", details: null, correlationId: null },
    );
    const noGrant = await form({ client_id: device.client_id, client_secret: secret });
    assert.equal((await noGrant.json()).error, "invalid_request");

    const asJson = await app.call("POST", "/oauth2/token", {
      token: null,
      body: { grant_type: "client_credentials", client_id: device.client_id, client_secret: secret },
    });
    assert.equal(asJson.status, 415);
    assert.equal((await asJson.json()).code, "UNSUPPORTED_MEDIA_TYPE");

    const huge = await form({ grant_type: "client_credentials", client_id: device.client_id, client_secret: "x".repeat(100_000) });
    assert.equal(huge.status, 413);
    assert.equal((await huge.json()).code, "PAYLOAD_TOO_LARGE");

    const get = await app.call("GET", "/oauth2/token", { token: null });
    assert.equal(get.status, 405);
  });

  test("JWKS and discovery describe the issuer, and the JWKS verifies issued tokens", async () => {
    const jwksResponse = await app.call("GET", "/oauth2/jwks", { token: null });
    assert.equal(jwksResponse.status, 200);
    const jwks = await jwksResponse.json();
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.deepEqual(Object.keys(key).sort(), ["alg", "e", "kid", "kty", "n", "use"]);
    assert.equal(key.kty, "RSA");
    assert.equal(key.alg, "RS256");
    assert.equal(key.use, "sig");
    const token = await tokenFor(device.client_id, secret);
    assert.equal(decodeProtectedHeader(token).kid, key.kid);
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: ISSUER, audience: "iot-backend" });
    assert.equal(payload.azp, device.client_id);

    const discovery = await (await app.call("GET", "/oauth2/.well-known/openid-configuration", { token: null })).json();
    assert.deepEqual(discovery, {
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/token`,
      jwks_uri: `${ISSUER}/jwks`,
      grant_types_supported: ["client_credentials"],
      response_types_supported: ["token"],
      subject_types_supported: ["public"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      id_token_signing_alg_values_supported: ["RS256"],
    });
  });

  test("the signing key is kept encrypted in the database and survives a restart", async () => {
    const token = await tokenFor(device.client_id, secret);
    const [row] = await app.services.database.db.select().from(settings).where(eq(settings.key, SIGNING_KEY_SETTING));
    // A Fernet token (version byte 0x80, base64url), not the JWK: only the secret box opens it.
    assert.match(row!.value, /^gAAAAA[\w-]+=*$/, "stored encrypted");
    assert.equal(JSON.parse(app.services.secretBox.decrypt(row!.value)).kty, "RSA");

    const restarted = await createServices(app.services.config);
    try {
      assert.equal((await restarted.builtinIssuer!.jwks()).keys[0]!.kid, decodeProtectedHeader(token).kid);
      const fromRestarted = (await restarted.builtinIssuer!.issueToken(device.client_id, 1)).access_token;
      assert.equal((await asDevice("/iot/config", fromRestarted)).status, 200);
    } finally {
      await restarted.close();
    }
    assert.equal((await asDevice("/iot/config", token)).status, 200);
  });

  test("replicas starting together on a fresh database end up with one signing key", async () => {
    const fresh = await createTestDatabase();
    const config = loadConfig({ DATABASE_URL: fresh.url, DATA_DIR: app.dataDir, LOG_LEVEL: "silent", ADMIN_API_TOKEN: ADMIN_TOKEN, MIGRATE_ON_START: "true", EMBEDDED_MQTT: "false" });
    const replicas = [await createServices(config), await createServices(config), await createServices(config)];
    try {
      const kids = await Promise.all(replicas.map(async (replica) => (await replica.builtinIssuer!.jwks()).keys[0]!.kid));
      assert.equal(new Set(kids).size, 1, kids.join(", "));
      const rows = await replicas[0]!.database.db.select().from(settings).where(eq(settings.key, SIGNING_KEY_SETTING));
      assert.equal(rows.length, 1);
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()));
      await fresh.drop();
    }
  });

  test("tokens that are wrong in any one way are 401 with the envelope", async () => {
    const now = Math.floor(Date.now() / 1000);
    const [otherModel] = await app.services.database.db.select().from(deviceModels).where(eq(deviceModels.code, "other"));
    const foreignKey = await generateKeyPair("RS256");
    const good = await mint({});
    const [head, body, signature] = good.split(".") as [string, string, string];
    const flipped = `${signature.slice(0, 10)}${signature[10] === "A" ? "B" : "A"}${signature.slice(11)}`;
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const hs256 = await new SignJWT({ azp: device.client_id, typ: "Bearer" })
      .setProtectedHeader({ alg: "HS256", kid: decodeProtectedHeader(good).kid! })
      .setIssuer(ISSUER)
      .setAudience("iot-backend")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(JSON.stringify((await (await app.call("GET", "/oauth2/jwks", { token: null })).json()).keys[0])));

    const cases: Record<string, [string, RegExp]> = {
      expired: [await mint({ iat: now - 1000, exp: now - 120 }), /expired/],
      "not yet valid": [await mint({ nbf: now + 600 }), /not valid yet/],
      "wrong audience": [await mint({ aud: "account" }), /audience/],
      "wrong issuer": [await mint({ iss: "http://evil.test/oauth2" }), /issuer/],
      "alg none": [`${b64({ alg: "none", typ: "JWT" })}.${body}.`, /algorithm/],
      "HS256 with the public key": [hs256, /algorithm/],
      "unknown kid": [await mint({}, { kid: "not-our-key" }, foreignKey.privateKey), /key the issuer does not publish/],
      "tampered signature": [`${head}.${body}.${flipped}`, /signature/],
      "tampered claims": [`${head}.${b64({ ...decodeJwt(good), azp: "iotdevice-thermo_1-aaaaaaaa" })}.${signature}`, /signature/],
      "azp with another model's code": [await mint({ azp: `iotdevice-${otherModel!.code}-${device.key}` }), /device .* does not exist/],
      "azp that is no device": [await mint({ azp: "iot-support-ui" }), /not belong to a device/],
      "an ID token": [await mint({ typ: "ID" }), /not an access token/],
      "no expiry": [await mint({ exp: undefined }), /"exp"/],
      garbage: ["not.a.jwt", /not a valid JWT/],
      "random text": [randomUUID(), /not a valid JWT/],
    };
    for (const [name, [token, reason]] of Object.entries(cases)) {
      const envelope = await assertRejected(await asDevice("/iot/config", token));
      assert.match(envelope.code, /^(INVALID_TOKEN|TOKEN_EXPIRED|UNKNOWN_DEVICE)$/, name);
      assert.match(envelope.error, reason, name);
    }
    assert.equal((await assertRejected(await asDevice("/iot/config", cases.expired![0]))).code, "TOKEN_EXPIRED");
    assert.equal((await asDevice("/iot/config", await mint({ exp: now - 10 }))).status, 200, "expiry within OIDC_CLOCK_SKEW_SECONDS is accepted");
    const missing = await assertRejected(await app.call("GET", "/iot/config", { token: null }));
    assert.match(missing.error, /token/i);
  });

  test("a deleted device's token stops working", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "gone", name: "Gone" } })).json();
    const doomed = await (await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } })).json();
    const token = await tokenFor(doomed.client_id, await app.services.identity.getSecret(doomed.client_id));
    assert.equal((await asDevice("/iot/config", token)).status, 200);
    assert.equal((await app.call("DELETE", `/api/devices/${doomed.id}`)).status, 204);
    assert.equal((await assertRejected(await asDevice("/iot/config", token))).code, "UNKNOWN_DEVICE");
    const [row] = await app.services.database.db.select().from(devices).where(eq(devices.id, doomed.id));
    assert.equal(row, undefined);
  });

  test("device tokens never reach the admin API, admin tokens never act as a device", async () => {
    const token = await tokenFor(device.client_id, secret);
    for (const path of ["/api/devices", "/api/device-models"]) {
      const response = await asDevice(path, token);
      assert.ok(response.status === 401 || response.status === 403, `${path}: ${response.status}`);
      await assertRejected(response, response.status);
    }
    await assertRejected(await app.call("GET", "/iot/config", { token: ADMIN_TOKEN }));
    await assertRejected(await app.call("GET", "/api/iot/firmware-version", { token: ADMIN_TOKEN }));
  });

  test("the device and OAuth2 routes are in the OpenAPI document", async () => {
    const document = await (await app.call("GET", "/api/docs/openapi.json", { token: null })).json();
    for (const path of ["/iot/config", "/api/iot/config", "/iot/firmware-version", "/api/iot/firmware-version", "/oauth2/jwks"]) {
      assert.deepEqual(document.paths[path].get.security, path.includes("iot") ? [{ deviceBearer: [] }] : [], path);
    }
    assert.ok(document.paths["/oauth2/token"].post.requestBody.content["application/x-www-form-urlencoded"]);
    assert.ok(document.paths["/oauth2/.well-known/openid-configuration"].get);
  });

  test("token checks are counted in iot_auth_validation_total", async () => {
    const counts = async () => {
      const metrics = await (await app.call("GET", "/metrics", { token: null })).text();
      const count = (status: string) => Number(metrics.match(new RegExp(`iot_auth_validation_total\\{status="${status}"\\} (\\d+)`))?.[1] ?? 0);
      return { success: count("success"), invalid: count("invalid") };
    };
    const token = await tokenFor(device.client_id, secret);
    const before = await counts();
    assert.equal((await asDevice("/iot/config", token)).status, 200);
    assert.equal((await asDevice("/iot/config", token)).status, 200);
    await assertRejected(await asDevice("/iot/config", "garbage"));
    const after = await counts();
    assert.deepEqual({ success: after.success - before.success, invalid: after.invalid - before.invalid }, { success: 2, invalid: 1 }, "a remembered token is counted too");
  });
});
