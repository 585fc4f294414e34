/** DeviceService over the shared rows, with the device's OAuth2 client in the fake identity provider. */
import { configMismatch, copiedFields } from "../../../lib/device-config.ts";
import type { ModelRow } from "../../../db/schema.ts";
import { deviceClientId, type DeviceService, generateDeviceKey, toDevice, toDeviceSummary } from "../../../lib/devices.ts";
import { deviceNotFound, validationFailed } from "../../../lib/errors.ts";
import type { IdentityProvider } from "../../../lib/identity/provider.ts";
import { compileSchema, validateAgainstSchema } from "../../../lib/json-schema.ts";
import type { Notifier } from "../../../lib/mqtt.ts";
import { toPage } from "../../../lib/paging.ts";
import { derivedOf, type FakeWorld, newDeviceRow } from "./world.ts";

/** The real service checks configs on a worker thread; the rules that matter to a handler are the same here. */
function readConfig(text: string, model: ModelRow) {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw validationFailed([{ field: "config", message: "is not valid JSON" }], "The config is not valid JSON.");
  }
  const schema = model.configSchema === null ? null : compileSchema(model.configSchema);
  if (schema?.ok) {
    const errors = validateAgainstSchema(schema.validate, value);
    const mismatch = configMismatch(errors);
    if (errors.length > 0 && !mismatch.ok) throw validationFailed(errors, mismatch.message);
  }
  return { config: text, ...copiedFields(value) };
}

/** ILIKE '%text%' as the real service asks PostgreSQL: the text anywhere, ignoring case, no wildcards. */
export const contains = (value: string, text: string) => value.toLowerCase().includes(text.toLowerCase());

export function fakeDeviceService(world: FakeWorld, deps: { identity: IdentityProvider; notifier: Notifier }): DeviceService {
  async function findWithModel(id: number) {
    const device = world.devices.get(id);
    if (!device) throw deviceNotFound(id);
    return { device, model: world.models.get(device.deviceModelId)! };
  }

  return {
    findWithModel,
    async page(query) {
      const rows = [...world.devices.values()]
        .filter(
          (row) =>
            (!query.model_id || row.deviceModelId === query.model_id) &&
            (!query.rotation_state || row.rotationState === query.rotation_state) &&
            (!query.q || contains(row.key, query.q) || (row.deviceName !== null && contains(row.deviceName, query.q))) &&
            (query.after === undefined || row.key > query.after),
        )
        .sort((a, b) => (a.key < b.key ? -1 : 1))
        .slice(0, query.limit + 1);
      return toPage(
        rows.map((row) => toDeviceSummary({ ...row, ...derivedOf(world, row) })),
        query.limit,
        (device) => device.key,
      );
    },
    async get(id) {
      const { device, model } = await findWithModel(id);
      return toDevice(device, model, derivedOf(world, device));
    },
    async create(input) {
      const model = world.models.get(input.device_model_id);
      if (!model) {
        throw validationFailed([{ field: "device_model_id", message: `no device model with id ${input.device_model_id}` }], `Device model ${input.device_model_id} does not exist.`);
      }
      const fields = readConfig(input.config, model);
      const key = generateDeviceKey();
      const clientId = deviceClientId(model.code, key);
      await deps.identity.createClient(clientId);
      const row = newDeviceRow(world.nextId(), { ...fields, key, clientId, deviceModelId: model.id });
      world.devices.set(row.id, row);
      return toDevice(row, model, derivedOf(world, row));
    },
    async update(id, input) {
      const { device, model } = await findWithModel(id);
      Object.assign(device, readConfig(input.config, model), { updatedAt: new Date() });
      await deps.notifier.publish("config", device.clientId, { device_key: device.key });
      return toDevice(device, model, derivedOf(world, device));
    },
    async remove(id) {
      const { device } = await findWithModel(id);
      await deps.identity.deleteClient(device.clientId);
      world.devices.delete(id);
    },
  };
}
