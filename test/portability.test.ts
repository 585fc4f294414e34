/**
 * The portability claim: the route list and services that server.ts serves through node:http also run unchanged
 * behind a second runtime's own fetch server — Bun's Bun.serve (test/support/bun-server.ts), on PostgreSQL and
 * Mosquitto. docs/architecture.md ("On another runtime") lists what this covers and what it does not.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ADMIN_TOKEN } from "./support/app.ts";
import { createTestDatabase } from "./support/database.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { readFixture } from "./support/fixtures.ts";
import { bareEnv, type Child, PROJECT_ROOT, runEntry } from "./support/process.ts";
import { freePort, testServerEnv } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

const BUN = process.env.BUN_BINARY ?? join(PROJECT_ROOT, "node_modules/.bin/bun");
const FIRMWARE = readFixture("firmware/esp_idf_blink_esp32s2.bin");

/** Never a skip: bun is a devDependency, so a missing or unrunnable binary is a broken install. */
function bunVersion(): string {
  try {
    return execFileSync(BUN, ["--version"], { encoding: "utf8" }).trim();
  } catch (error) {
    throw new Error(
      `Bun does not run (${BUN}: ${(error as Error).message.split("\n")[0]}). It comes with \`npm ci\` (devDependency "bun"; ` +
        `its postinstall, approved in package.json "allowScripts", puts the binary of @oven/bun-<platform> in place), or set BUN_BINARY.`,
    );
  }
}

const BUN_VERSION = bunVersion();

describe(`the same route list served by Bun ${BUN_VERSION} (Bun.serve) instead of node:http`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  let server: Child;
  let base: string;

  const call = (method: string, path: string, init: { token?: string; body?: BodyInit; type?: string } = {}) =>
    fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${init.token ?? ADMIN_TOKEN}`, ...(init.type && { "content-type": init.type }) },
      body: init.body,
    });
  const json = (method: string, path: string, body: unknown) => call(method, path, { body: JSON.stringify(body), type: "application/json" });
  async function expectStatus(response: Response, status: number) {
    if (response.status !== status) assert.fail(`${response.url}: expected ${status}, got ${response.status} ${await response.text()}`);
    return response;
  }

  before(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), "iot-bun-"));
    const env = bareEnv(testServerEnv({ databaseUrl: database.url, dataDir, port: await freePort() }));
    server = runEntry("test/support/bun-server.ts", [], { cwd: dataDir, env, runtime: BUN });
    base = (await server.waitForOutput(new RegExp(`^Bun ${BUN_VERSION} listening on (http://\\S+?)/?$`, "m"), 15_000))[1]!;
  });
  after(async () => {
    server?.process.kill("SIGTERM");
    await server?.exited(10_000).finally(() => server.kill());
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  let model: { id: number; code: string };
  let device: { id: number; key: string; client_id: string; config: string };

  test("health: PostgreSQL and the MQTT broker reached from Bun", async () => {
    const health = await waitFor("the Bun server to report MQTT connected", async () => {
      const body = await (await fetch(`${base}/api/health`)).json();
      return body.mqtt === "connected" && body;
    }, 5_000);
    assert.deepEqual(health, { status: "healthy", database: "connected", mqtt: "connected" });
  });

  test("admin: a model with a config schema (checked on the worker thread), a device, read back", async () => {
    const schema = { type: "object", properties: { deviceName: { type: "string" }, interval: { type: "integer", minimum: 1 } } };
    model = await (await expectStatus(await json("POST", "/api/device-models", { code: "thermo", name: "Thermostat", config_schema: JSON.stringify(schema) }), 201)).json();

    const refused = await json("POST", "/api/devices", { device_model_id: model.id, config: '{"interval": 0}' });
    assert.equal((await assertErrorEnvelope(refused, 400, "config against the schema")).code, "VALIDATION_FAILED");

    const config = '{"deviceName": "Kitchen", "interval": 30}';
    device = await (await expectStatus(await json("POST", "/api/devices", { device_model_id: model.id, config }), 201)).json();
    const read = await (await expectStatus(await call("GET", `/api/devices/${device.id}`), 200)).json();
    assert.equal(read.key, device.key);
    assert.equal(read.config, config);
    assert.equal(read.device_name, "Kitchen");
  });

  test("admin: a firmware upload streamed to disk and downloaded back byte for byte", async () => {
    const uploaded = await expectStatus(await call("POST", `/api/device-models/${model.id}/firmware?rollout=immediate`, { body: FIRMWARE, type: "application/octet-stream" }), 200);
    assert.match((await uploaded.json()).firmware_version, /\S/);
    const downloaded = await expectStatus(await call("GET", `/api/device-models/${model.id}/firmware?rollout=immediate`), 200);
    assert.ok(Buffer.from(await downloaded.arrayBuffer()).equals(FIRMWARE));
  });

  test("device: the provisioning package's credentials get a token from /oauth2/token that reads /iot/config and /api/iot/config", async () => {
    const pkg = await (await expectStatus(await call("GET", `/api/devices/${device.id}/provisioning`), 200)).json();
    assert.equal(pkg.client_id, device.client_id);
    assert.equal(pkg.token_url, `${base}/oauth2/token`);
    const form = new URLSearchParams({ grant_type: "client_credentials", client_id: pkg.client_id, client_secret: pkg.client_secret });
    const issued = await expectStatus(await fetch(pkg.token_url, { method: "POST", body: form }), 200);
    const deviceToken: string = (await issued.json()).access_token;

    for (const path of ["/iot/config", "/api/iot/config"]) {
      const response = await expectStatus(await call("GET", path, { token: deviceToken }), 200);
      assert.equal(await response.text(), device.config, path);
    }
    const firmware = await expectStatus(await call("GET", "/iot/firmware", { token: deviceToken }), 200);
    assert.ok(Buffer.from(await firmware.arrayBuffer()).equals(FIRMWARE));
    await assertErrorEnvelope(await call("GET", `/api/devices/${device.id}`, { token: deviceToken }), [401, 403], "a device token on an admin route");
  });

  test("errors: an unknown URL is the 404 envelope, a method the URL does not serve is 405 with Allow", async () => {
    assert.equal((await assertErrorEnvelope(await call("GET", "/api/nothing-here"), 404, "GET /api/nothing-here")).code, "ROUTE_NOT_FOUND");
    const wrongMethod = await call("PATCH", `/api/devices/${device.id}`);
    assert.equal((await assertErrorEnvelope(wrongMethod, 405, "PATCH /api/devices/:id")).code, "METHOD_NOT_ALLOWED");
    assert.equal(wrongMethod.headers.get("allow"), "GET, PUT, DELETE, HEAD");
  });
});
