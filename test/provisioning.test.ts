/**
 * Provisioning packages (JSON, base64 NVS, raw NVS) and the device-client status/repair routes, on real
 * PostgreSQL with the built-in provider and with the real Keycloak (`bash keycloak/start.sh`).
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config.ts";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { buildNvsImage, parseNvsCsv } from "../lib/provisioning/nvs.ts";
import { buildProvisioningPackage, provisioningNvsImage, provisioningSettings } from "../lib/provisioning/package.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { readFixture } from "./support/fixtures.ts";
import { clientCredentialsToken, requireKeycloak } from "./support/keycloak.ts";
import { keycloakEnv } from "./support/server.ts";

const kc = await requireKeycloak();

const vector = (name: string) => readFixture(`nvs/${name}`);

const PACKAGE_KEYS = ["device_key", "client_id", "client_secret", "token_url", "base_url", "mqtt_url", "wifi_ssid", "wifi_password"];
const SETTINGS = { DEVICE_MQTT_URL: "mqtt://mqtt.iot.test:1883", WIFI_SSID: "HomeLab", WIFI_PASSWORD: "correct horse battery staple" };

type Device = { id: number; key: string; client_id: string; secret_created_at: string };

async function createDevice(app: TestApp, code: string): Promise<Device> {
  const model = await app.call("POST", "/api/device-models", { body: { code, name: code } });
  assert.equal(model.status, 201);
  const response = await app.call("POST", "/api/devices", { body: { device_model_id: (await model.json()).id, config: "{}" } });
  assert.equal(response.status, 201);
  return response.json();
}

const provisioning = (app: TestApp, id: number, query = "") => app.call("GET", `/api/devices/${id}/provisioning${query}`);

async function downloadPackage(app: TestApp, id: number): Promise<Record<string, string>> {
  const response = await provisioning(app, id);
  assert.equal(response.status, 200);
  return response.json();
}

async function assertError(response: Response, status: number, code: string) {
  assert.equal(response.status, status);
  const body = await response.json();
  assert.equal(body.code, code, body.error);
  return body;
}

const nvsOf = (pkg: Record<string, string>, size: number) =>
  buildNvsImage({ namespaces: [{ name: "prov", entries: Object.entries(pkg).map(([key, value]) => ({ key, value })) }] }, size);

describe("provisioning package settings", () => {
  it("prefers DEVICE_BASEURL and DEVICE_MQTT_URL, and drops a trailing slash from the base URL", () => {
    assert.deepEqual(
      // Through loadConfig: that is where URLs lose their trailing slashes.
      provisioningSettings(loadConfig({
        BASEURL: "http://internal:3201",
        DEVICE_BASEURL: "https://iot.example/",
        MQTT_URL: "mqtt://internal:1883",
        DEVICE_MQTT_URL: "mqtts://mqtt.example:8883",
        WIFI_SSID: "s",
        WIFI_PASSWORD: "p",
      })),
      { base_url: "https://iot.example", mqtt_url: "mqtts://mqtt.example:8883", wifi_ssid: "s", wifi_password: "p" },
    );
    assert.deepEqual(
      provisioningSettings({ BASEURL: "http://iot.local", MQTT_URL: "mqtt://m:1883", WIFI_SSID: "s", WIFI_PASSWORD: "p" } as never),
      { base_url: "http://iot.local", mqtt_url: "mqtt://m:1883", wifi_ssid: "s", wifi_password: "p" },
    );
  });

  it("the package and its NVS image match Espressif's tool for the shared vector's values", async () => {
    const [ns] = parseNvsCsv(vector("prov-basic.csv").toString("utf8")).namespaces;
    const value = Object.fromEntries(ns!.entries.map((e) => [e.key, e.value]));
    const pkg = await buildProvisioningPackage({
      config: { BASEURL: value.base_url, MQTT_URL: value.mqtt_url, WIFI_SSID: value.wifi_ssid, WIFI_PASSWORD: value.wifi_password } as never,
      tokenUrl: value.token_url!,
      device: { key: value.device_key!, clientId: value.client_id! },
      readSecret: async () => value.client_secret!,
    });
    assert.deepEqual(Object.keys(pkg), ns!.entries.map((e) => e.key));
    for (const size of [0x3000, 0x4000, 0x6000]) {
      const expected = vector(`prov-basic-0x${size.toString(16)}.bin`);
      assert.ok(Buffer.from(provisioningNvsImage(pkg, size)).equals(expected), `byte-identical to prov-basic-0x${size.toString(16)}.bin`);
    }
  });
});

describe("provisioning and client repair (built-in provider)", () => {
  let app: TestApp;
  let device: Device;
  before(async () => {
    app = await createTestApp({ env: SETTINGS });
    device = await createDevice(app, "thermo");
  });
  after(() => app?.close());

  it("no query: the JSON package as a file, 8 keys in order, with the provider's current secret", async () => {
    const response = await provisioning(app, device.id);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(response.headers.get("content-disposition"), `attachment; filename="provisioning-${device.key}.json"`);
    const pkg = await response.json();
    assert.deepEqual(Object.keys(pkg), PACKAGE_KEYS);
    assert.deepEqual(pkg, {
      device_key: device.key,
      client_id: device.client_id,
      client_secret: await app.services.identity.getSecret(device.client_id),
      token_url: app.services.identity.tokenUrl,
      base_url: "http://iot.test",
      mqtt_url: SETTINGS.DEVICE_MQTT_URL,
      wifi_ssid: SETTINGS.WIFI_SSID,
      wifi_password: SETTINGS.WIFI_PASSWORD,
    });
    assert.equal(pkg.token_url, "http://iot.test/oauth2/token");
  });

  it("reading never rotates: two downloads (and format=json) return the same secret", async () => {
    const first = await downloadPackage(app, device.id);
    const second = await downloadPackage(app, device.id);
    const explicit = await provisioning(app, device.id, "?format=json");
    assert.equal(explicit.status, 200);
    assert.equal(explicit.headers.get("cache-control"), "no-store");
    assert.equal(first.client_secret, second.client_secret);
    assert.deepEqual(await explicit.json(), first);
    assert.equal(await app.services.identity.getSecret(device.client_id), first.client_secret);
  });

  it("?partition_size=N: {size, data} whose base64 is the package's NVS image", async () => {
    const pkg = await downloadPackage(app, device.id);
    for (const [query, size] of [["0x4000", 0x4000], ["12288", 0x3000]] as const) {
      const response = await provisioning(app, device.id, `?partition_size=${query}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("cache-control"), "no-store");
      assert.equal(response.headers.get("content-disposition"), null);
      const body = await response.json();
      assert.deepEqual(Object.keys(body), ["size", "data"]);
      assert.equal(body.size, size);
      assert.ok(Buffer.from(body.data, "base64").equals(nvsOf(pkg, size)), `NVS image for ${query}`);
    }
  });

  it("?format=nvs&partition_size=N: the raw image as an octet-stream attachment", async () => {
    const pkg = await downloadPackage(app, device.id);
    const response = await provisioning(app, device.id, "?format=nvs&partition_size=0x6000");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.equal(response.headers.get("content-type"), "application/octet-stream");
    assert.equal(response.headers.get("content-disposition"), `attachment; filename="provisioning-${device.key}.bin"`);
    const bytes = Buffer.from(await response.arrayBuffer());
    assert.equal(bytes.length, 0x6000);
    assert.ok(bytes.equals(nvsOf(pkg, 0x6000)));
  });

  it("bad partition sizes and unknown query values are 400 VALIDATION_FAILED", async () => {
    const bad = ["0x2000", "0x3800", "4097", "0", "-12288", "abc", "0x", "", "0x2000000", "12288.0"];
    for (const size of bad) {
      for (const query of [`?partition_size=${size}`, `?format=nvs&partition_size=${size}`]) {
        const body = await assertError(await provisioning(app, device.id, query), 400, "VALIDATION_FAILED");
        assert.equal(body.details.errors[0].field, "partition_size", query);
      }
    }
    const others: [string, string][] = [
      ["?format=nvs", "partition_size"],
      ["?format=xml", "format"],
      ["?format=json&partition_size=0x4000", "partition_size"],
      ["?partition_size=0x4000&partition_size=0x5000", "partition_size"],
      ["?device_key=abc", "device_key"],
    ];
    for (const [query, field] of others) {
      const body = await assertError(await provisioning(app, device.id, query), 400, "VALIDATION_FAILED");
      assert.equal(body.details.errors[0].field, field, query);
    }
  });

  it("an unknown device is a 404 on all three routes", async () => {
    await assertError(await provisioning(app, 999999), 404, "DEVICE_NOT_FOUND");
    await assertError(await app.call("GET", "/api/devices/999999/keycloak-status"), 404, "DEVICE_NOT_FOUND");
    await assertError(await app.call("POST", "/api/devices/999999/keycloak-sync"), 404, "DEVICE_NOT_FOUND");
    assert.equal((await provisioning(app, device.id, "")).status, 200);
    assert.equal((await app.call("GET", `/api/devices/${device.id}/provisioning`, { token: null })).status, 401);
  });

  it("keycloak-status of an existing client (built-in: uuid = client id, no console)", async () => {
    const response = await app.call("GET", `/api/devices/${device.id}/keycloak-status`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { exists: true, client_id: device.client_id, keycloak_uuid: device.client_id, console_url: null });
  });

  it("keycloak-sync leaves a healthy client and its secret alone", async () => {
    const before = await app.services.identity.getSecret(device.client_id);
    const response = await app.call("POST", `/api/devices/${device.id}/keycloak-sync`);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual({ ...body, message: undefined }, {
      exists: true,
      client_id: device.client_id,
      keycloak_uuid: device.client_id,
      console_url: null,
      created: false,
      stale_secret: false,
      message: undefined,
    });
    assert.match(body.message, /unchanged/);
    assert.equal(await app.services.identity.getSecret(device.client_id), before);
    const read = await (await app.call("GET", `/api/devices/${device.id}`)).json();
    assert.equal(read.secret_created_at, device.secret_created_at);
  });

  it("a deleted client: status says so, the package is a 409, and keycloak-sync recreates it with a stale-secret notice", async () => {
    const other = await createDevice(app, "lamp");
    const oldSecret = (await downloadPackage(app, other.id)).client_secret;
    await app.services.identity.deleteClient(other.client_id);

    const status = await app.call("GET", `/api/devices/${other.id}/keycloak-status`);
    assert.equal(status.status, 200);
    assert.deepEqual(await status.json(), { exists: false, client_id: other.client_id, keycloak_uuid: null, console_url: null });
    const missing = await assertError(await provisioning(app, other.id), 409, "CLIENT_MISSING");
    assert.match(missing.error, /keycloak-sync/);

    const sync = await app.call("POST", `/api/devices/${other.id}/keycloak-sync`);
    assert.equal(sync.status, 200);
    assert.deepEqual(await sync.json(), {
      exists: true,
      client_id: other.client_id,
      keycloak_uuid: other.client_id,
      console_url: null,
      created: true,
      stale_secret: true,
      message: "The client was recreated with a new secret; download the provisioning package again and re-flash the device.",
    });
    const fresh = await downloadPackage(app, other.id);
    assert.notEqual(fresh.client_secret, oldSecret);
    assert.equal(fresh.client_secret, await app.services.identity.getSecret(other.client_id));
    const read = await (await app.call("GET", `/api/devices/${other.id}`)).json();
    assert.ok(Date.parse(read.secret_created_at) > Date.parse(other.secret_created_at), "secret_created_at moves to the recreation");
  });
});

describe("provisioning without the settings it needs", () => {
  let app: TestApp;
  let device: Device;
  const secretReads: string[] = [];
  before(async () => {
    app = await createTestApp({
      env: { BASEURL: "" },
      overrides: {
        identity: (real) => ({
          ...real,
          getSecret: (clientId) => {
            secretReads.push(clientId);
            return real.getSecret(clientId);
          },
          regenerateSecret: (clientId) => {
            secretReads.push(`regenerate ${clientId}`);
            return real.regenerateSecret(clientId);
          },
        }),
      },
    });
    device = await createDevice(app, "plug");
  });
  after(() => app?.close());

  it("is a 400 naming every missing setting, for every form, and no secret is read", async () => {
    for (const query of ["", "?partition_size=0x4000", "?format=nvs&partition_size=0x4000"]) {
      const body = await assertError(await provisioning(app, device.id, query), 400, "PROVISIONING_NOT_CONFIGURED");
      assert.equal(body.error, "Provisioning needs these settings: BASEURL (or DEVICE_BASEURL), MQTT_URL (or DEVICE_MQTT_URL), WIFI_SSID, WIFI_PASSWORD.");
      assert.deepEqual(body.details.missing_settings, ["BASEURL (or DEVICE_BASEURL)", "MQTT_URL (or DEVICE_MQTT_URL)", "WIFI_SSID", "WIFI_PASSWORD"]);
    }
    assert.deepEqual(secretReads, []);
  });

  it("names a single missing setting in the singular", async () => {
    await assert.rejects(
      buildProvisioningPackage({
        config: { BASEURL: "http://x", MQTT_URL: "mqtt://m", WIFI_SSID: "s" } as never,
        tokenUrl: "http://x/token",
        device: { key: "abcd1234", clientId: "iotdevice-x-abcd1234" },
        readSecret: () => assert.fail("the secret must not be read"),
      }),
      { status: 400, code: "PROVISIONING_NOT_CONFIGURED", message: "Provisioning needs this setting: WIFI_PASSWORD." },
    );
  });
});

describe("provisioning and client repair (Keycloak)", () => {
  let app: TestApp;
  const created: number[] = [];
  const adminBase = kc.adminApi;

  async function keycloakAdmin(method: string, path: string, body?: unknown) {
    const token = await clientCredentialsToken(kc.tokenUrl, kc.adminClientId, kc.adminClientSecret);
    assert.ok(token.ok, "the backend's service account can log in");
    const response = await fetch(`${adminBase}${path}`, {
      method,
      headers: { authorization: `Bearer ${token.accessToken}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.ok(response.ok, `${method} ${path}: HTTP ${response.status}`);
    return response.status === 204 ? null : response.json();
  }

  const keycloakClient = async (clientId: string) =>
    ((await keycloakAdmin("GET", `/clients?clientId=${encodeURIComponent(clientId)}`)) as { id: string; clientId: string }[]).find(
      (c) => c.clientId === clientId,
    );

  async function canAuthenticate(clientId: string, secret: string) {
    const result = await clientCredentialsToken(kc.tokenUrl, clientId, secret);
    if (!result.ok) return false;
    assert.ok([decodeJwt(result.accessToken!).aud].flat().includes(kc.audience), "the token carries the backend's audience");
    return true;
  }

  async function keycloakDevice(code: string) {
    const device = await createDevice(app, code);
    created.push(device.id);
    return device;
  }

  before(async () => {
    app = await createTestApp({
      env: { ...SETTINGS, ...keycloakEnv() },
    });
  });
  after(async () => {
    if (!app) return;
    for (const id of created) await app.call("DELETE", `/api/devices/${id}`);
    await app.close();
  });

  it("the package carries the backend's token pass-through and the client's working secret; downloads never rotate it", async () => {
    const device = await keycloakDevice("kcsensor");
    const first = await downloadPackage(app, device.id);
    const second = await downloadPackage(app, device.id);
    assert.deepEqual(Object.keys(first), PACKAGE_KEYS);
    assert.equal(first.token_url, `${first.base_url}/oauth2/token`, "Keycloak keeps previous secrets: the backend must see the tokens");
    assert.equal(first.client_secret, second.client_secret);
    assert.equal(await app.services.identity.getSecret(device.client_id), first.client_secret);
    assert.equal(await canAuthenticate(device.client_id, first.client_secret!), true);
  });

  it("keycloak-status: the client's UUID and console link, or exists:false once it is gone", async () => {
    const device = await keycloakDevice("kcstatus");
    const client = await keycloakClient(device.client_id);
    assert.ok(client);
    const response = await app.call("GET", `/api/devices/${device.id}/keycloak-status`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      exists: true,
      client_id: device.client_id,
      keycloak_uuid: client.id,
      console_url: `${kc.baseUrl}/admin/master/console/#/${kc.realm}/clients/${client.id}/settings`,
    });

    await keycloakAdmin("DELETE", `/clients/${client.id}`);
    const gone = await app.call("GET", `/api/devices/${device.id}/keycloak-status`);
    assert.equal(gone.status, 200);
    assert.deepEqual(await gone.json(), { exists: false, client_id: device.client_id, keycloak_uuid: null, console_url: null });
  });

  it("keycloak-sync recreates a deleted client: stale_secret, a new working secret, secret_created_at moves", async () => {
    const device = await keycloakDevice("kcsync");
    const oldSecret = (await downloadPackage(app, device.id)).client_secret!;
    const oldClient = await keycloakClient(device.client_id);
    await keycloakAdmin("DELETE", `/clients/${oldClient!.id}`);
    await assertError(await provisioning(app, device.id), 409, "CLIENT_MISSING");

    const response = await app.call("POST", `/api/devices/${device.id}/keycloak-sync`);
    assert.equal(response.status, 200);
    const body = await response.json();
    const client = await keycloakClient(device.client_id);
    assert.ok(client && client.id !== oldClient!.id);
    assert.deepEqual(body, {
      exists: true,
      client_id: device.client_id,
      keycloak_uuid: client.id,
      console_url: `${kc.baseUrl}/admin/master/console/#/${kc.realm}/clients/${client.id}/settings`,
      created: true,
      stale_secret: true,
      message: "The client was recreated with a new secret; download the provisioning package again and re-flash the device.",
    });

    const fresh = (await downloadPackage(app, device.id)).client_secret!;
    assert.notEqual(fresh, oldSecret);
    assert.equal(await canAuthenticate(device.client_id, fresh), true);
    assert.equal(await canAuthenticate(device.client_id, oldSecret), false);
    const read = await (await app.call("GET", `/api/devices/${device.id}`)).json();
    assert.ok(Date.parse(read.secret_created_at) > Date.parse(device.secret_created_at));
  });

  it("keycloak-sync repairs a misconfigured client in place and keeps its secret", async () => {
    const device = await keycloakDevice("kcrepair");
    const secret = (await downloadPackage(app, device.id)).client_secret!;
    const client = await keycloakClient(device.client_id);
    const scopes = (await keycloakAdmin("GET", "/client-scopes")) as { id: string; name: string }[];
    const scope = scopes.find((s) => s.name === kc.deviceScopeName)!;
    // Broken by hand: disabled, and without the scope that adds the backend's audience.
    await keycloakAdmin("PUT", `/clients/${client!.id}`, { clientId: device.client_id, enabled: false });
    await keycloakAdmin("DELETE", `/clients/${client!.id}/default-client-scopes/${scope.id}`);
    assert.equal((await clientCredentialsToken(kc.tokenUrl, device.client_id, secret)).ok, false);

    const response = await app.call("POST", `/api/devices/${device.id}/keycloak-sync`);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.created, false);
    assert.equal(body.stale_secret, false);
    assert.equal(body.keycloak_uuid, client!.id);
    assert.equal(await app.services.identity.getSecret(device.client_id), secret);
    assert.equal(await canAuthenticate(device.client_id, secret), true);
    const read = await (await app.call("GET", `/api/devices/${device.id}`)).json();
    assert.equal(read.secret_created_at, device.secret_created_at);

    // And a healthy client is left as it is.
    const again = await (await app.call("POST", `/api/devices/${device.id}/keycloak-sync`)).json();
    assert.equal(again.created, false);
    assert.equal(await app.services.identity.getSecret(device.client_id), secret);
  });
});
