/**
 * Behaviour the device-model and device services must have: the real ones on PostgreSQL and the in-memory fakes run
 * the same suite, so a unit test over the fakes sees the statuses and codes the real services give.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { DeviceModelService } from "../../lib/device-models.ts";
import type { DeviceService } from "../../lib/devices.ts";
import { AppError } from "../../lib/errors.ts";
import type { IdentityProvider } from "../../lib/identity/provider.ts";
import type { Notice } from "./fakes/notifier.ts";

export type DeviceServicesSetup = () => Promise<{
  models: DeviceModelService;
  devices: DeviceService;
  identity: IdentityProvider;
  /** Notices the services published so far. */
  notices(): Notice[];
  close(): Promise<void>;
}>;

const SCHEMA = JSON.stringify({ type: "object", properties: { deviceName: { type: "string" } }, required: ["deviceName"] });

async function rejects(promise: Promise<unknown>, status: number, code: string, field?: string) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
    assert.deepEqual([error.status, error.code], [status, code], error.message);
    if (field) assert.equal((error.details?.errors as { field: string }[])[0]?.field.split(".")[0], field);
    return true;
  });
}

export function describeDeviceServicesContract(name: string, setup: DeviceServicesSetup): void {
  describe(`Device model and device services contract: ${name}`, () => {
    let env: Awaited<ReturnType<DeviceServicesSetup>>;
    // Codes unique per run: the real services share one database across the cases.
    const code = () => `c_${randomBytes(5).toString("hex")}`;
    const newModel = (configSchema: string | null = null) => env.models.create({ code: code(), name: "A model", config_schema: configSchema }, "test-admin");

    before(async () => {
      env = await setup();
    });
    after(() => env?.close());

    it("creates a model that reads back the same, listed by code with its device count", async () => {
      const model = await env.models.create({ code: code(), name: "Thermostat", config_schema: SCHEMA }, "test-admin");
      assert.deepEqual([model.name, model.config_schema, model.device_count, model.has_config_schema, model.firmware_version], ["Thermostat", SCHEMA, 0, true, null]);
      assert.deepEqual(await env.models.get(model.id), model);
      await env.devices.create({ device_model_id: model.id, config: '{"deviceName":"x"}' }, "test-admin");
      const listed = (await env.models.page({ limit: 1000 })).items.find((m) => m.id === model.id);
      assert.equal(listed?.device_count, 1);
      const codes = (await env.models.page({ limit: 1000 })).items.map((m) => m.code);
      assert.deepEqual(codes, [...codes].sort());
    });

    it("refuses a duplicate code (409 DUPLICATE_MODEL_CODE) and a schema that is not one (400 VALIDATION_FAILED)", async () => {
      const model = await newModel();
      await rejects(env.models.create({ code: model.code, name: "Again" }, "test-admin"), 409, "DUPLICATE_MODEL_CODE");
      await rejects(env.models.create({ code: code(), name: "x", config_schema: "{nope" }, "test-admin"), 400, "VALIDATION_FAILED", "config_schema");
    });

    it("updates only the given fields of a model", async () => {
      const model = await newModel(SCHEMA);
      const updated = await env.models.update(model.id, { name: "Renamed", config_schema: null }, "test-admin");
      assert.deepEqual([updated.name, updated.code, updated.config_schema], ["Renamed", model.code, SCHEMA]);
    });

    it("an unknown model is 404 DEVICE_MODEL_NOT_FOUND everywhere", async () => {
      await rejects(env.models.get(999_999), 404, "DEVICE_MODEL_NOT_FOUND");
      await rejects(env.models.findRow(999_999), 404, "DEVICE_MODEL_NOT_FOUND");
      await rejects(env.models.update(999_999, { name: "x" }, "test-admin"), 404, "DEVICE_MODEL_NOT_FOUND");
      await rejects(env.models.remove(999_999, "test-admin"), 404, "DEVICE_MODEL_NOT_FOUND");
    });

    it("removes a model only while no device uses it (409 MODEL_HAS_DEVICES)", async () => {
      const model = await newModel();
      const device = await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      await rejects(env.models.remove(model.id, "test-admin"), 409, "MODEL_HAS_DEVICES");
      await env.devices.remove(device.id, "test-admin");
      await env.models.remove(model.id, "test-admin");
      await rejects(env.models.get(model.id), 404, "DEVICE_MODEL_NOT_FOUND");
    });

    it("creates a device with its OAuth2 client; the config's fields are copied; it reads back the same", async () => {
      const model = await newModel(SCHEMA);
      const config = JSON.stringify({ deviceName: "Hall", deviceEntityId: "sensor.hall", enableOTA: true });
      const device = await env.devices.create({ device_model_id: model.id, config }, "test-admin");
      assert.match(device.key, /^[a-z0-9]{8}$/);
      assert.equal(device.client_id, `iotdevice-${model.code}-${device.key}`);
      assert.deepEqual([device.device_name, device.device_entity_id, device.enable_ota, device.config, device.rotation_state], ["Hall", "sensor.hall", true, config, "OK"]);
      assert.deepEqual(device.device_model, { id: model.id, code: model.code, name: model.name, firmware_version: null });
      assert.equal((await env.identity.status(device.client_id)).exists, true);
      assert.deepEqual(await env.devices.get(device.id), device);
      const { device: row, model: modelRow } = await env.devices.findWithModel(device.id);
      assert.deepEqual([row.clientId, modelRow.code], [device.client_id, model.code]);
    });

    it("refuses an unknown model, a config that is not JSON or not the schema's (400 VALIDATION_FAILED)", async () => {
      const model = await newModel(SCHEMA);
      await rejects(env.devices.create({ device_model_id: 999_999, config: "{}" }, "test-admin"), 400, "VALIDATION_FAILED", "device_model_id");
      await rejects(env.devices.create({ device_model_id: model.id, config: "{nope" }, "test-admin"), 400, "VALIDATION_FAILED", "config");
      await rejects(env.devices.create({ device_model_id: model.id, config: '{"deviceName":5}' }, "test-admin"), 400, "VALIDATION_FAILED", "config");
    });

    it("lists devices by key, filtered by model and rotation state", async () => {
      const model = await newModel();
      const a = await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      const b = await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      const listed = (await env.devices.page({ model_id: model.id, limit: 1000 })).items;
      assert.deepEqual(listed.map((d) => d.id).sort(), [a.id, b.id].sort());
      assert.deepEqual(listed.map((d) => d.key), [a.key, b.key].sort());
      assert.deepEqual((await env.devices.page({ model_id: model.id, rotation_state: "PENDING", limit: 1000 })).items, []);
    });

    it("pages devices by key: every row once, in order, also while rows come and go between pages", async () => {
      const model = await newModel();
      const made = [];
      for (let i = 0; i < 7; i++) made.push(await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin"));
      const keys = made.map((d) => d.key).sort();
      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      let deleted: string | undefined;
      const added: string[] = [];
      do {
        const page = await env.devices.page({ model_id: model.id, limit: 3, after });
        assert.ok(page.items.length <= 3);
        seen.push(...page.items.map((d) => d.key));
        if (page.next !== null) assert.equal(page.next, page.items.at(-1)!.key);
        after = page.next ?? undefined;
        if (++pages === 1) {
          // Between pages: one row not yet reached is deleted, one is added.
          const victim = made.find((d) => d.key > after!)!;
          await env.devices.remove(victim.id, "test-admin");
          deleted = victim.key;
          added.push((await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin")).key);
        }
      } while (after !== undefined);
      assert.deepEqual(seen, [...seen].sort(), "in key order");
      assert.equal(new Set(seen).size, seen.length, "no row twice");
      for (const key of keys) if (key !== deleted) assert.ok(seen.includes(key), `row ${key} seen`);
      assert.ok(!seen.includes(deleted!), "the deleted row not listed after it went");
      for (const key of added) assert.equal(seen.includes(key), key > seen[2]!, "an added row shows when it sorts after the page read before it came");
      const last = await env.devices.page({ model_id: model.id, limit: 1000 });
      assert.equal(last.next, null);
      const exact = await env.devices.page({ model_id: model.id, limit: last.items.length });
      assert.equal(exact.next, null, "a page that ends the list exactly is the last");
    });

    it("searches devices by key or device name (ignoring case, wildcards literal), with the other filters", async () => {
      const model = await newModel();
      const tag = randomBytes(4).toString("hex");
      const hall = await env.devices.create({ device_model_id: model.id, config: JSON.stringify({ deviceName: `Hall ${tag} 50%_x` }) }, "test-admin");
      const attic = await env.devices.create({ device_model_id: model.id, config: JSON.stringify({ deviceName: `ATTIC ${tag}` }) }, "test-admin");
      await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      const search = async (q: string, more = {}) => (await env.devices.page({ q, limit: 1000, ...more })).items.map((d) => d.id).sort();
      assert.deepEqual(await search(tag.toUpperCase()), [hall.id, attic.id].sort());
      assert.deepEqual(await search(`hall ${tag}`), [hall.id]);
      assert.deepEqual(await search(hall.key.toUpperCase(), { model_id: model.id }), [hall.id]);
      assert.deepEqual(await search("50%_x"), [hall.id]);
      assert.deepEqual(await search(`${tag}%`), [], "% is not a wildcard");
      assert.deepEqual(await search(`h_ll ${tag}`), [], "_ is not a wildcard");
      assert.deepEqual(await search(tag, { rotation_state: "QUEUED" }), []);
    });

    it("pages models by code, searched by code or name", async () => {
      const prefix = `p_${randomBytes(4).toString("hex")}`;
      const made = [];
      for (const suffix of ["c", "a", "e", "b", "d"]) made.push(await env.models.create({ code: `${prefix}_${suffix}`, name: `Model ${suffix.toUpperCase()}` }, "test-admin"));
      const codes: string[] = [];
      let after: string | undefined;
      do {
        const page = await env.models.page({ q: prefix.toUpperCase(), limit: 2, after });
        codes.push(...page.items.map((m) => m.code));
        after = page.next ?? undefined;
      } while (after !== undefined);
      assert.deepEqual(codes, made.map((m) => m.code).sort());
      const byName = (await env.models.page({ q: "model D", limit: 1000 })).items.filter((m) => m.code.startsWith(prefix));
      assert.deepEqual(byName.map((m) => m.code), [`${prefix}_d`]);
    });

    it("updates a device's config and sends it a config notice; refuses a bad config", async () => {
      const model = await newModel(SCHEMA);
      const device = await env.devices.create({ device_model_id: model.id, config: '{"deviceName":"Hall"}' }, "test-admin");
      const updated = await env.devices.update(device.id, { config: '{"deviceName":"Attic"}' }, "test-admin");
      assert.equal(updated.device_name, "Attic");
      assert.deepEqual(
        env.notices().filter((notice) => notice.clientId === device.client_id),
        [{ kind: "config", clientId: device.client_id, payload: { client_id: device.client_id, device_key: device.key } }],
      );
      await rejects(env.devices.update(device.id, { config: "{}" }, "test-admin"), 400, "VALIDATION_FAILED", "config");
      assert.equal((await env.devices.get(device.id)).device_name, "Attic");
    });

    it("removes a device with its client; an unknown device is 404 DEVICE_NOT_FOUND everywhere", async () => {
      const model = await newModel();
      const device = await env.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
      await env.devices.remove(device.id, "test-admin");
      assert.equal((await env.identity.status(device.client_id)).exists, false);
      for (const operation of [
        () => env.devices.get(device.id),
        () => env.devices.findWithModel(device.id),
        () => env.devices.update(device.id, { config: "{}" }, "test-admin"),
        () => env.devices.remove(device.id, "test-admin"),
      ]) {
        await rejects(operation(), 404, "DEVICE_NOT_FOUND");
      }
    });
  });
}
