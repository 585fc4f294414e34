/**
 * CONTRACT §1/§9: a 500 carries no internal text, and no secret (client secrets, tokens, the admin token, WiFi
 * password) ever reaches a log line, whatever route a request took.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { IdentityProvider } from "../lib/identity/provider.ts";
import { createLogger } from "../lib/logger.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";

describe("errors and logs keep secrets and internals to themselves", () => {
  const lines: string[] = [];
  let app: TestApp;
  let breakNextCreate = false;
  before(async () => {
    // A provider bug whose message carries SQL and a secret, as a driver error might.
    const buggy = (real: IdentityProvider): IdentityProvider => ({
      ...real,
      async createClient(clientId) {
        if (!breakNextCreate) return real.createClient(clientId);
        breakNextCreate = false;
        throw new Error("insert into builtin_clients values ('iotdevice-x', 'leaked-s3cret') failed");
      },
    });
    app = await createTestApp({
      env: { DEVICE_MQTT_URL: "mqtt://broker.lan:1883", WIFI_SSID: "homelab", WIFI_PASSWORD: "wifi-pa55word", LOG_LEVEL: "debug" },
      overrides: { identity: buggy, logger: createLogger("debug", {}, (line) => lines.push(line)) },
    });
  });
  after(() => app.close());

  test("an unexpected error is a 500 envelope without internal text, logged with its request id", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "bug", name: "Bug" } })).json();
    breakNextCreate = true;
    const response = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" }, headers: { "x-request-id": "bug-1" } });
    assert.equal(response.status, 500);
    const text = await response.text();
    assert.deepEqual(JSON.parse(text), {
      error: "Something went wrong on our side. The error was logged.",
      code: "INTERNAL_ERROR",
      details: null,
      correlationId: "bug-1",
    });
    assert.ok(!/insert|leaked|builtin_clients|at /.test(text));
    assert.equal((await (await app.call("GET", "/api/devices")).json()).count, 0, "no device row was left behind");
    assert.ok(lines.some((line) => line.includes('"Unhandled error"') && line.includes('"request_id":"bug-1"')));
  });

  test("no secret reaches the logs: client secrets, tokens, the admin token, the WiFi password, the encryption key", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "quiet", name: "Quiet" } })).json();
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } })).json();
    const secret = await app.services.identity.getSecret(device.client_id);
    const token = async (clientSecret: string) =>
      app.fetch(
        new Request("http://iot.test/oauth2/token", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "client_credentials", client_id: device.client_id, client_secret: clientSecret }),
        }),
      );
    const good = await (await token(secret)).json();
    assert.equal((await token("wrong-guess-123")).status, 401);
    const pkg = await (await app.call("GET", `/api/devices/${device.id}/provisioning`)).json();
    assert.equal(pkg.client_secret, secret);
    const asDevice = await app.call("GET", "/iot/provisioning", { token: good.access_token });
    assert.equal(asDevice.status, 200);
    assert.equal((await app.call("GET", "/api/devices", { token: "not-the-admin-token-but-long" })).status, 401);

    // The test app runs embedded-style: the key was generated into DATA_DIR (and its creation logged, by path).
    const { config } = app.services;
    const encryptionKey = config.SECRET_ENCRYPTION_KEY ?? readFileSync(join(config.DATA_DIR, "secret-encryption-key"), "utf8").trim();
    assert.ok(encryptionKey.length >= 40);

    assert.ok(lines.length > 5, "requests were logged");
    for (const value of [secret, "wrong-guess-123", good.access_token, ADMIN_TOKEN, "wifi-pa55word", "not-the-admin-token-but-long", encryptionKey]) {
      const leaking = lines.find((line) => line.includes(value));
      assert.equal(leaking, undefined, `a log line contains a secret: ${leaking}`);
    }
  });
});
