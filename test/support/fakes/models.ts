/** DeviceModelService over the shared rows; what it refuses, and how, is held to the real one by a contract test. */
import type { ModelRow } from "../../../db/schema.ts";
import { type DeviceModelService, toModel, toSummary } from "../../../lib/device-models.ts";
import { conflict, modelNotFound, validationFailed } from "../../../lib/errors.ts";
import { compileSchema } from "../../../lib/json-schema.ts";
import { toPage } from "../../../lib/paging.ts";
import { contains } from "./devices.ts";
import { type FakeWorld, newModelRow } from "./world.ts";

function assertValidSchema(text: string | null | undefined) {
  if (text === null || text === undefined) return;
  const compiled = compileSchema(text);
  if (!compiled.ok) throw validationFailed([{ field: "config_schema", message: compiled.problem }], compiled.problem);
}

export function fakeDeviceModelService(world: FakeWorld, hooks: { onDeleted?: (model: ModelRow) => Promise<void> } = {}): DeviceModelService {
  const deviceCount = (id: number) => [...world.devices.values()].filter((device) => device.deviceModelId === id).length;
  const findRow = async (id: number) => {
    const row = world.models.get(id);
    if (!row) throw modelNotFound(id);
    return row;
  };

  return {
    findRow,
    async page(query) {
      const rows = [...world.models.values()]
        .filter((row) => (!query.q || contains(row.code, query.q) || contains(row.name, query.q)) && (query.after === undefined || row.code > query.after))
        .sort((a, b) => (a.code < b.code ? -1 : 1))
        .slice(0, query.limit + 1);
      return toPage(
        rows.map((row) => toSummary(row, deviceCount(row.id))),
        query.limit,
        (model) => model.code,
      );
    },
    async get(id) {
      return toModel(await findRow(id), deviceCount(id));
    },
    async create(input) {
      assertValidSchema(input.config_schema);
      if ([...world.models.values()].some((row) => row.code === input.code)) {
        throw conflict(`A device model with code "${input.code}" already exists.`, "DUPLICATE_MODEL_CODE");
      }
      const row = newModelRow(world.nextId(), { code: input.code, name: input.name, configSchema: input.config_schema ?? null });
      if (input.firmware_rollout) row.firmwareRollout = input.firmware_rollout;
      world.models.set(row.id, row);
      return toModel(row, 0);
    },
    async update(id, input) {
      assertValidSchema(input.config_schema);
      const row = await findRow(id);
      if (input.name != null) row.name = input.name;
      if (input.config_schema != null) row.configSchema = input.config_schema;
      if (input.firmware_rollout) row.firmwareRollout = input.firmware_rollout;
      row.updatedAt = new Date();
      return toModel(row, deviceCount(id));
    },
    async remove(id) {
      const row = await findRow(id);
      const n = deviceCount(id);
      if (n > 0) throw conflict(`Device model "${row.code}" still has ${n} device${n === 1 ? "" : "s"}; delete or move them first.`, "MODEL_HAS_DEVICES");
      world.models.delete(id);
      for (const version of [...world.versions.values()]) if (version.deviceModelId === id) world.versions.delete(version.id);
      await hooks.onDeleted?.(row);
    },
  };
}
