import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestApp, type TestApp } from "./support/app.ts";

const schema = JSON.stringify({
  type: "object",
  properties: { deviceName: { type: "string" }, interval: { type: "integer", minimum: 1 } },
  required: ["deviceName"],
});

describe("device models API", () => {
  let app: TestApp;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());

  test("create, read, list sorted by code, update, delete", async () => {
    const created = await app.call("POST", "/api/device-models", { body: { code: "thermo_v2", name: "Thermostat", config_schema: schema } });
    assert.equal(created.status, 201);
    const model = await created.json();
    assert.equal(model.code, "thermo_v2");
    assert.equal(model.config_schema, schema);
    assert.equal(model.has_config_schema, true);
    assert.equal(model.firmware_version, null);
    assert.equal(model.device_count, 0);
    assert.match(model.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    await app.call("POST", "/api/device-models", { body: { code: "a_first", name: "First" } });
    const list = await (await app.call("GET", "/api/device-models")).json();
    assert.deepEqual(list.device_models.map((m: { code: string }) => m.code), ["a_first", "thermo_v2"]);
    assert.equal(list.count, 2);
    assert.equal(list.device_models[0].config_schema, undefined, "the summary has no schema text");
    assert.equal(list.device_models[0].has_config_schema, false);

    const renamed = await app.call("PUT", `/api/device-models/${model.id}`, { body: { name: "Thermostat 2" } });
    assert.equal(renamed.status, 200);
    const after = await renamed.json();
    assert.equal(after.name, "Thermostat 2");
    assert.equal(after.config_schema, schema, "absent config_schema stays unchanged");

    const nulls = await (await app.call("PUT", `/api/device-models/${model.id}`, { body: { name: null, config_schema: null } })).json();
    assert.equal(nulls.name, "Thermostat 2");
    assert.equal(nulls.config_schema, schema);

    assert.equal((await app.call("DELETE", `/api/device-models/${model.id}`)).status, 204);
    const gone = await app.call("GET", `/api/device-models/${model.id}`);
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).code, "DEVICE_MODEL_NOT_FOUND");
  });

  test("a duplicate code is a 409 and creates nothing", async () => {
    assert.equal((await app.call("POST", "/api/device-models", { body: { code: "dup", name: "One" } })).status, 201);
    const again = await app.call("POST", "/api/device-models", { body: { code: "dup", name: "Two" } });
    assert.equal(again.status, 409);
    const body = await again.json();
    assert.equal(body.code, "DUPLICATE_MODEL_CODE");
    assert.match(body.error, /dup/);
    const list = await (await app.call("GET", "/api/device-models")).json();
    assert.equal(list.device_models.filter((m: { code: string }) => m.code === "dup").length, 1);
  });

  test("the code cannot change and must match the allowed pattern", async () => {
    const created = await (await app.call("POST", "/api/device-models", { body: { code: "fixed", name: "Fixed" } })).json();
    const change = await app.call("PUT", `/api/device-models/${created.id}`, { body: { code: "other" } });
    assert.equal(change.status, 400);
    assert.deepEqual((await change.json()).details.errors, [{ field: "code", message: "is not a known field" }]);
    for (const code of ["", "Upper", "with-dash", "x".repeat(51), "spa ce"]) {
      const response = await app.call("POST", "/api/device-models", { body: { code, name: "Bad" } });
      assert.equal(response.status, 400, code);
      assert.equal((await response.json()).details.errors[0].field, "code");
    }
  });

  test("an invalid JSON Schema is rejected when the model is saved", async () => {
    for (const config_schema of ["{not json", '{"type": "objekt"}', "[1,2]", '{"properties": {"a": {"minimum": "one"}}}']) {
      const response = await app.call("POST", "/api/device-models", { body: { code: "bad_schema", name: "Bad", config_schema } });
      assert.equal(response.status, 400, config_schema);
      const body = await response.json();
      assert.equal(body.code, "VALIDATION_FAILED");
      assert.equal(body.details.errors[0].field, "config_schema");
    }
    const created = await (await app.call("POST", "/api/device-models", { body: { code: "later", name: "Later" } })).json();
    const update = await app.call("PUT", `/api/device-models/${created.id}`, { body: { config_schema: '{"type": 5}' } });
    assert.equal(update.status, 400);
    assert.equal((await (await app.call("GET", `/api/device-models/${created.id}`)).json()).config_schema, null);
  });

  test("a schema that refers to itself without descending into the config is refused; recursion through a property is not", async () => {
    const loops = [
      { $ref: "#" },
      { anyOf: [{ type: "string" }, { $ref: "#" }] },
      { $ref: "#/$defs/a", $defs: { a: { allOf: [{ $ref: "#/$defs/b" }] }, b: { not: { $ref: "#/$defs/a" } } } },
      { $schema: "http://json-schema.org/draft-07/schema#", definitions: { a: { $ref: "#" } }, allOf: [{ $ref: "#/definitions/a" }] },
    ];
    for (const loop of loops) {
      const response = await app.call("POST", "/api/device-models", { body: { code: "loop", name: "Loop", config_schema: JSON.stringify(loop) } });
      assert.equal(response.status, 400, JSON.stringify(loop));
      const body = await response.json();
      assert.equal(body.code, "VALIDATION_FAILED");
      assert.equal(body.details.errors[0].field, "config_schema");
      assert.match(body.error, /refers to itself without descending into the config/);
    }
    const list = await (await app.call("GET", "/api/device-models")).json();
    assert.equal(list.device_models.filter((m: { code: string }) => m.code === "loop").length, 0);

    const tree = JSON.stringify({ type: "object", properties: { name: { type: "string" }, children: { type: "array", items: { $ref: "#" } } } });
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "tree", name: "Tree", config_schema: tree } })).json();
    assert.equal(model.config_schema, tree);
    const update = await app.call("PUT", `/api/device-models/${model.id}`, { body: { config_schema: '{"$ref": "#"}' } });
    assert.equal(update.status, 400);
    assert.equal((await (await app.call("GET", `/api/device-models/${model.id}`)).json()).config_schema, tree, "the stored schema is unchanged");
    const config = JSON.stringify({ name: "root", children: [{ name: "leaf", children: [{ name: 5 }] }] });
    const device = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config } });
    assert.deepEqual((await device.json()).details.errors, [{ field: "config.children.0.children.0.name", message: "must be string" }]);
  });

  test("a schema with an $id can be changed and keeps it", async () => {
    const versions = [{ type: "object" }, { type: "object", required: ["room"] }].map((schema) => JSON.stringify({ $id: "https://example.com/thermo.json", ...schema }));
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "with_id", name: "With $id", config_schema: versions[0] } })).json();
    const update = await app.call("PUT", `/api/device-models/${model.id}`, { body: { config_schema: versions[1] } });
    assert.equal(update.status, 200);
    const device = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } });
    assert.deepEqual((await device.json()).details.errors, [{ field: "config", message: "must have required property 'room'" }]);
  });

  test("draft-07 schemas are accepted and enforced", async () => {
    const draft07 = JSON.stringify({ $schema: "http://json-schema.org/draft-07/schema#", type: "object", required: ["x"] });
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "d07", name: "Draft 7", config_schema: draft07 } })).json();
    assert.equal(model.has_config_schema, true);
    const bad = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } });
    assert.equal(bad.status, 400);
  });
});
