import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { builtinClients, deviceModels, devices } from "../db/schema.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { faultyIdentity } from "./support/faulty-identity.ts";

const schema = JSON.stringify({
  type: "object",
  properties: { deviceName: { type: "string" }, interval: { type: "integer", minimum: 1 } },
  required: ["deviceName"],
});

describe("devices API", () => {
  let app: TestApp;
  let modelId: number;
  before(async () => {
    app = await createTestApp();
    modelId = (await (await app.call("POST", "/api/device-models", { body: { code: "sensor", name: "Sensor", config_schema: schema } })).json()).id;
  });
  after(() => app.close());

  const create = (config: unknown, model = modelId) =>
    app.call("POST", "/api/devices", { body: { device_model_id: model, config: typeof config === "string" ? config : JSON.stringify(config) } });

  test("create stores the config verbatim, copies the named fields and creates the OAuth2 client", async () => {
    const config = '{"deviceName": "Kitchen", "deviceEntityId": "sensor.kitchen", "enableOTA": true, "interval": 30}';
    const response = await create(config);
    assert.equal(response.status, 201);
    const device = await response.json();
    assert.match(device.key, /^[a-z0-9]{8}$/);
    assert.equal(device.client_id, `iotdevice-sensor-${device.key}`);
    assert.equal(device.config, config);
    assert.equal(device.device_name, "Kitchen");
    assert.equal(device.device_entity_id, "sensor.kitchen");
    assert.equal(device.enable_ota, true);
    assert.equal(device.rotation_state, "OK");
    assert.deepEqual(device.device_model, { id: modelId, code: "sensor", name: "Sensor", firmware_version: null });
    assert.ok(device.secret_created_at);
    assert.equal(device.last_rotation_attempt_at, null);
    assert.equal(device.last_rotation_completed_at, null);

    const status = await app.services.identity.status(device.client_id);
    assert.equal(status.exists, true);
    const [stored] = await app.services.database.db.select().from(builtinClients).where(eq(builtinClients.clientId, device.client_id));
    const secret = await app.services.identity.getSecret(device.client_id);
    assert.ok(!stored!.secretEncrypted.includes(secret), "the secret is not stored in plain text");

    const read = await (await app.call("GET", `/api/devices/${device.id}`)).json();
    assert.deepEqual(read, device);
  });

  test("the config is validated against the model's schema", async () => {
    const missing = await create({ interval: 5 });
    assert.equal(missing.status, 400);
    const body = await missing.json();
    assert.equal(body.code, "VALIDATION_FAILED");
    assert.ok(body.details.errors.length > 0);
    const wrongType = await create({ deviceName: "x", interval: 0 });
    const wrongTypeBody = await wrongType.json();
    assert.deepEqual(wrongTypeBody.details.errors, [{ field: "config.interval", message: "must be >= 1" }]);
    assert.equal(wrongTypeBody.error, "Config validation failed: /interval must be >= 1");
    const notJson = await create("{deviceName: x}");
    assert.equal(notJson.status, 400);
    assert.equal((await notJson.json()).details.errors[0].field, "config");
    const unknownModel = await create({ deviceName: "x" }, 999999);
    assert.equal(unknownModel.status, 400);
    assert.equal((await unknownModel.json()).details.errors[0].field, "device_model_id");
  });

  test("a config that is not an object has no copied fields (model without schema)", async () => {
    const free = await (await app.call("POST", "/api/device-models", { body: { code: "free", name: "Free" } })).json();
    const device = await (await create("[1, 2]", free.id)).json();
    assert.equal(device.device_name, null);
    assert.equal(device.enable_ota, null);
    assert.equal(device.config, "[1, 2]");
  });

  test("list is sorted by key and filters by model and rotation state (validated)", async () => {
    const other = await (await app.call("POST", "/api/device-models", { body: { code: "other", name: "Other" } })).json();
    await create({ deviceName: "a" });
    await create({ deviceName: "b" });
    await create({ deviceName: "c" }, other.id);
    const all = await (await app.call("GET", "/api/devices")).json();
    const keys = all.devices.map((d: { key: string }) => d.key);
    assert.deepEqual(keys, [...keys].sort());
    assert.equal(all.count, all.devices.length);
    const ofOther = await (await app.call("GET", `/api/devices?model_id=${other.id}`)).json();
    assert.equal(ofOther.count, 1);
    assert.equal(ofOther.devices[0].device_model_id, other.id);
    assert.equal(ofOther.devices[0].config, undefined, "the summary has no config");

    const [first] = all.devices;
    await app.services.database.db.update(devices).set({ rotationState: "TIMEOUT" }).where(eq(devices.id, first.id));
    const timeouts = await (await app.call("GET", "/api/devices?rotation_state=TIMEOUT")).json();
    assert.deepEqual(timeouts.devices.map((d: { id: number }) => d.id), [first.id]);

    for (const query of ["rotation_state=BROKEN", "model_id=abc", "model_id=-1", "color=red"]) {
      const response = await app.call("GET", `/api/devices?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal((await response.json()).code, "VALIDATION_FAILED");
    }
  });

  test("update re-validates and changes the copied fields; delete removes the client", async () => {
    const device = await (await create({ deviceName: "before" })).json();
    const invalid = await app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"interval": 3}' } });
    assert.equal(invalid.status, 400);
    assert.equal((await (await app.call("GET", `/api/devices/${device.id}`)).json()).device_name, "before");

    const updated = await app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"deviceName": "after"}' } });
    assert.equal(updated.status, 200);
    assert.equal((await updated.json()).device_name, "after");

    assert.equal((await app.call("DELETE", `/api/devices/${device.id}`)).status, 204);
    assert.equal((await app.call("GET", `/api/devices/${device.id}`)).status, 404);
    assert.equal((await app.services.identity.status(device.client_id)).exists, false);
    assert.equal((await app.call("DELETE", `/api/devices/${device.id}`)).status, 404);
  });

  test("a model with devices cannot be deleted", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "busy", name: "Busy" } })).json();
    const device = await (await create("{}", model.id)).json();
    const response = await app.call("DELETE", `/api/device-models/${model.id}`);
    assert.equal(response.status, 409);
    assert.equal((await response.json()).code, "MODEL_HAS_DEVICES");
    assert.equal((await (await app.call("GET", `/api/device-models/${model.id}`)).json()).device_count, 1);
    await app.call("DELETE", `/api/devices/${device.id}`);
    assert.equal((await app.call("DELETE", `/api/device-models/${model.id}`)).status, 204);
  });
});

describe("devices with a failing identity provider leave no partial state", () => {
  let app: TestApp;
  const faults = faultyIdentity();
  before(async () => {
    app = await createTestApp({ overrides: { identity: faults.wrap } });
  });
  after(() => app.close());

  test("create fails with 503 and leaves neither a device row nor a client", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "m", name: "M" } })).json();
    faults.set({ operation: "createClient", when: "before" });
    const response = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } });
    faults.set(null);
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.code, "UPSTREAM_UNAVAILABLE");
    assert.equal((await (await app.call("GET", "/api/devices")).json()).count, 0);
    assert.equal((await app.services.database.db.select().from(builtinClients)).length, 0);
  });

  test("delete fails with 503 and keeps both the device and its client", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "late", name: "Late" } })).json();
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } })).json();
    faults.set({ operation: "deleteClient", when: "before" });
    const response = await app.call("DELETE", `/api/devices/${device.id}`);
    faults.set(null);
    assert.equal(response.status, 503);
    assert.equal((await app.call("GET", `/api/devices/${device.id}`)).status, 200, "the device row stays");
    assert.equal((await app.services.identity.status(device.client_id)).exists, true, "and so does its client");
  });
});

describe("configs whose check an admin's schema makes costly", () => {
  let app: TestApp;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());

  const modelWith = async (code: string, schema: object) => {
    const response = await app.call("POST", "/api/device-models", { body: { code, name: code, config_schema: JSON.stringify(schema) } });
    assert.equal(response.status, 201);
    return (await response.json()).id as number;
  };
  const create = (modelId: number, config: string) => app.call("POST", "/api/devices", { body: { device_model_id: modelId, config } });
  const deviceCount = async () => (await (await app.call("GET", "/api/devices")).json()).count;

  test("a pattern that backtracks is cut off with 400 while the server keeps answering", async () => {
    const modelId = await modelWith("backtracking", { properties: { name: { type: "string", pattern: "^(a+)+$" } } });
    const before = await deviceCount();
    // Checked on the event loop, 28 a's took seconds (doubling per character) and held up every other request.
    const hostile = create(modelId, JSON.stringify({ name: `${"a".repeat(28)}!` }));
    let settled = false;
    void hostile.finally(() => (settled = true));
    // Back to back, so that a stall anywhere in the hostile request's life would fall into one health call.
    const healthMs: number[] = [];
    while (!settled) {
      const started = performance.now();
      assert.equal((await app.call("GET", "/api/health")).status, 200);
      healthMs.push(performance.now() - started);
    }
    assert.ok(Math.max(...healthMs) < 1000, `health answered within a second while the check ran: ${healthMs.map(Math.round).join(", ")} ms`);

    const response = await hostile;
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(body.code, "VALIDATION_FAILED");
    assert.equal(body.error, 'Checking the config against the schema of model "backtracking" takes too long.');
    assert.equal(body.details.errors[0].field, "config");
    assert.match(body.details.errors[0].message, /longer than \d+ ms/);
    assert.equal(await deviceCount(), before, "no device was created");

    assert.equal((await create(modelId, '{"name": "aaa"}')).status, 201, "the same model's next config is checked as usual");
  });

  test("uniqueItems over thousands of objects: the update is refused and the config stays", async () => {
    const modelId = await modelWith("unique_list", { properties: { list: { type: "array", uniqueItems: true } } });
    const device = await (await create(modelId, '{"list": []}')).json();
    const list = Array.from({ length: 16_000 }, (_, i) => ({ id: i, name: `item ${i}` }));
    const response = await app.call("PUT", `/api/devices/${device.id}`, { body: { config: JSON.stringify({ list }) } });
    assert.equal(response.status, 400);
    assert.match((await response.json()).details.errors[0].message, /could not be checked against the model's schema/);
    assert.equal((await (await app.call("GET", `/api/devices/${device.id}`)).json()).config, '{"list": []}');
  });

  test("a self-referencing schema stored before it was refused answers 400, not 500", async () => {
    const modelId = await modelWith("stored_loop", { type: "object" });
    const device = await (await create(modelId, "{}")).json();
    await app.services.database.db.update(deviceModels).set({ configSchema: '{"$ref": "#"}' }).where(eq(deviceModels.id, modelId));
    const before = await deviceCount();

    const created = await create(modelId, "{}");
    assert.equal(created.status, 400);
    const body = await created.json();
    assert.equal(body.error, 'The schema of model "stored_loop" is refused; save a corrected config_schema first.');
    assert.match(body.details.errors[0].message, /refers to itself without descending into the config/);
    assert.equal(await deviceCount(), before);

    const updated = await app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"changed": true}' } });
    assert.equal(updated.status, 400);
    assert.equal((await (await app.call("GET", `/api/devices/${device.id}`)).json()).config, "{}");
  });

  test("a config nested deeper than any schema may follow is refused", async () => {
    const modelId = await modelWith("tree", { type: "array", items: { $ref: "#" } });
    assert.equal((await create(modelId, "[[[]], []]")).status, 201);
    assert.equal((await create(modelId, `${"[".repeat(60)}${"]".repeat(60)}`)).status, 201, "60 levels follow the schema");
    const response = await create(modelId, `${"[".repeat(200_000)}${"]".repeat(200_000)}`);
    assert.equal(response.status, 400);
    assert.match((await response.json()).details.errors[0].message, /nested deeper than 64 levels/);
  });
});
