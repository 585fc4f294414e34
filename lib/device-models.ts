import { and, asc, eq, gt, ilike, or, type SQL, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { deviceModels, type ModelRow } from "../db/schema.ts";
import type { Actor, AuditRecorder } from "./audit/log.ts";
import { isForeignKeyViolation, isUniqueViolation } from "./db-errors.ts";
import { conflict, modelNotFound, validationFailed } from "./errors.ts";
import { containsPattern, type Page, toPage } from "./paging.ts";
import type { SchemaChecker } from "./schema-checker.ts";
import type { z } from "zod";
import type { createModelBody, Model, ModelPageQuery, ModelSummary, updateModelBody } from "./schemas.ts";

export const toSummary = (row: ModelRow, deviceCount: number): ModelSummary => ({
  id: row.id,
  code: row.code,
  name: row.name,
  firmware_version: row.firmwareVersion,
  has_config_schema: row.configSchema !== null,
  device_count: deviceCount,
});

export const toModel = (row: ModelRow, deviceCount: number): Model => ({
  ...toSummary(row, deviceCount),
  config_schema: row.configSchema,
  firmware_rollout: row.firmwareRollout,
  created_at: row.createdAt.toISOString(),
  updated_at: row.updatedAt.toISOString(),
});

// Spelled out with table names: drizzle leaves columns unqualified here, and "id" would bind to devices.id.
const deviceCountOf = sql<number>`(select count(*) from devices d where d.device_model_id = "device_models"."id")`.mapWith(Number);

export function createDeviceModelService(
  db: Database,
  schemaChecker: SchemaChecker,
  audit: AuditRecorder,
  hooks: { onDeleted?: (model: ModelRow) => Promise<void> } = {},
) {
  async function assertValidSchema(text: string | null | undefined) {
    if (text === null || text === undefined) return;
    const problems = await schemaChecker.checkSchema(text);
    if (problems.length > 0) {
      throw validationFailed(problems.map((message) => ({ field: "config_schema", message })), problems[0]);
    }
  }

  async function findWithDeviceCount(id: number) {
    const [found] = await db.select({ row: deviceModels, deviceCount: deviceCountOf }).from(deviceModels).where(eq(deviceModels.id, id));
    if (!found) throw modelNotFound(id);
    return found;
  }

  return {
    /** The model's row alone (no device count): for firmware uploads and downloads. */
    async findRow(id: number): Promise<ModelRow> {
      const [row] = await db.select().from(deviceModels).where(eq(deviceModels.id, id));
      if (!row) throw modelNotFound(id);
      return row;
    },

    /** One page of the models matching `q`, by code, after the code `after` (keyset paging, lib/paging.ts). */
    async page(query: ModelPageQuery): Promise<Page<ModelSummary>> {
      const filters: SQL[] = [];
      if (query.q) filters.push(or(ilike(deviceModels.code, containsPattern(query.q)), ilike(deviceModels.name, containsPattern(query.q)))!);
      if (query.after !== undefined) filters.push(gt(deviceModels.code, query.after));
      const rows = await db
        .select({ row: deviceModels, deviceCount: deviceCountOf })
        .from(deviceModels)
        .where(and(...filters))
        .orderBy(asc(deviceModels.code))
        .limit(query.limit + 1);
      return toPage(rows.map(({ row, deviceCount }) => toSummary(row, deviceCount)), query.limit, (model) => model.code);
    },

    async get(id: number): Promise<Model> {
      const { row, deviceCount } = await findWithDeviceCount(id);
      return toModel(row, deviceCount);
    },

    async create(input: z.output<typeof createModelBody>, actor: Actor): Promise<Model> {
      await assertValidSchema(input.config_schema);
      try {
        const row = await db.transaction(async (tx) => {
          const [row] = await tx
            .insert(deviceModels)
            .values({ code: input.code, name: input.name, configSchema: input.config_schema ?? null, firmwareRollout: input.firmware_rollout ?? "staged" })
            .returning();
          await audit.record(tx, { actor, kind: "model.created", modelId: row!.id, details: { code: row!.code, name: row!.name } });
          return row!;
        });
        return toModel(row, 0);
      } catch (error) {
        if (isUniqueViolation(error)) throw conflict(`A device model with code "${input.code}" already exists.`, "DUPLICATE_MODEL_CODE");
        throw error;
      }
    },

    async update(id: number, input: z.output<typeof updateModelBody>, actor: Actor): Promise<Model> {
      await assertValidSchema(input.config_schema);
      const changes = {
        ...(input.name != null && { name: input.name }),
        ...(input.config_schema != null && { configSchema: input.config_schema }),
        ...(input.firmware_rollout !== undefined && { firmwareRollout: input.firmware_rollout }),
      };
      if (Object.keys(changes).length > 0) {
        await db.transaction(async (tx) => {
          const [before] = await tx.select().from(deviceModels).where(eq(deviceModels.id, id)).for("update");
          if (!before) throw modelNotFound(id);
          await tx.update(deviceModels).set({ ...changes, updatedAt: new Date() }).where(eq(deviceModels.id, id));
          // The schema's text is not repeated (up to 256 KiB); that it changed is what the trail needs.
          const changed = [
            ...(changes.name !== undefined && changes.name !== before.name ? ["name"] : []),
            ...(changes.configSchema !== undefined && changes.configSchema !== before.configSchema ? ["config_schema"] : []),
            ...(changes.firmwareRollout !== undefined && changes.firmwareRollout !== before.firmwareRollout ? ["firmware_rollout"] : []),
          ];
          if (changed.length === 0) return;
          const details = {
            code: before.code,
            changed_fields: changed,
            ...(changed.includes("name") && { name: changes.name! }),
            ...(changed.includes("firmware_rollout") && { firmware_rollout: changes.firmwareRollout! }),
          };
          await audit.record(tx, { actor, kind: "model.updated", modelId: id, details });
        });
      }
      return this.get(id);
    },

    async remove(id: number, actor: Actor): Promise<void> {
      const { row, deviceCount } = await findWithDeviceCount(id);
      if (deviceCount > 0) throw modelInUse(row.code, deviceCount);
      try {
        await db.transaction(async (tx) => {
          const deleted = await tx.delete(deviceModels).where(eq(deviceModels.id, id)).returning({ id: deviceModels.id });
          if (deleted.length === 0) throw modelNotFound(id);
          await audit.record(tx, { actor, kind: "model.deleted", modelId: id, details: { code: row.code } });
        });
      } catch (error) {
        // A device was added between the check and the delete.
        if (isForeignKeyViolation(error)) throw modelInUse(row.code, 1);
        throw error;
      }
      await hooks.onDeleted?.(row);
    },
  };
}

const modelInUse = (code: string, n: number) =>
  conflict(`Device model "${code}" still has ${n} device${n === 1 ? "" : "s"}; delete or move them first.`, "MODEL_HAS_DEVICES");

export type DeviceModelService = ReturnType<typeof createDeviceModelService>;
