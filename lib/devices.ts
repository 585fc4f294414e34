import { randomInt } from "node:crypto";
import { and, asc, eq, gt, ilike, or, type SQL } from "drizzle-orm";
import type { z } from "zod";
import type { Database } from "../db/client.ts";
import { devicesWithModels } from "../db/device-with-model.ts";
import { type DeviceRow, deviceModels, devices, firmwareVersions, type ModelRow } from "../db/schema.ts";
import { inTransaction } from "./transaction-scope.ts";
import type { Actor, AuditRecorder } from "./audit/log.ts";
import { isUniqueViolation } from "./db-errors.ts";
import { changedConfigFields } from "./device-config.ts";
import { runningFirmware, type RunningInputs } from "./device-state/running.ts";
import { deviceNotFound, validationFailed } from "./errors.ts";
import { targetVersions, withVersionRows } from "./firmware/targets.ts";
import { containsPattern, type Page, toPage } from "./paging.ts";
import { rotationStateIs, rotationStateSql } from "./rotation/queue.ts";
import type { IdentityProvider } from "./identity/provider.ts";
import type { Logger } from "./logger.ts";
import { errorMessage } from "./logger.ts";
import type { Notifier } from "./mqtt.ts";
import type { SchemaChecker } from "./schema-checker.ts";
import type { createDeviceBody, Device, DevicePageQuery, DeviceSummary, updateDeviceBody } from "./schemas.ts";

const KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
export const generateDeviceKey = () => Array.from({ length: 8 }, () => KEY_ALPHABET[randomInt(KEY_ALPHABET.length)]).join("");
export const deviceClientId = (modelCode: string, key: string) => `iotdevice-${modelCode}-${key}`;

const iso = (date: Date | null) => date?.toISOString() ?? null;

/**
 * The columns a DeviceSummary needs. The list reads only these: with all columns (config text, six more
 * timestamps parsed into Dates) listing 10,000 devices took ~4x as long (test/bench/foundation.bench.ts).
 */
const summaryColumns = {
  id: devices.id,
  key: devices.key,
  deviceModelId: devices.deviceModelId,
  deviceName: devices.deviceName,
  deviceEntityId: devices.deviceEntityId,
  enableOta: devices.enableOta,
  rotationState: rotationStateSql,
  secretCreatedAt: devices.secretCreatedAt,
  rotationUnconfirmed: devices.rotationUnconfirmed,
  previousSecretExpiresAt: devices.previousSecretExpiresAt,
  lastSeenAt: devices.lastSeenAt,
  reportedFirmwareVersion: devices.reportedFirmwareVersion,
  downloadedAt: devices.downloadedAt,
  firmwarePinVersionId: devices.firmwarePinVersionId,
  downloadedVersion: firmwareVersions.version,
  targetVersion: targetVersions.version,
};

/**
 * What a device view shows that its row does not hold: the version strings of its last full download and of its
 * target, and its rotation state with the queue taken into account (lib/rotation/queue.ts).
 */
type Derived = { downloadedVersion: string | null; targetVersion: string | null; rotationState: DeviceRow["rotationState"] };

type SummaryInputs = Pick<DeviceRow, Exclude<keyof typeof summaryColumns, keyof Derived>> & RunningInputs & Derived;

export function toDeviceSummary(row: SummaryInputs): DeviceSummary {
  const running = runningFirmware(row);
  return {
    id: row.id,
    key: row.key,
    device_model_id: row.deviceModelId,
    device_name: row.deviceName,
    device_entity_id: row.deviceEntityId,
    enable_ota: row.enableOta,
    rotation_state: row.rotationState,
    secret_created_at: iso(row.secretCreatedAt),
    rotation_unconfirmed: row.rotationUnconfirmed,
    previous_secret_expires_at: iso(row.previousSecretExpiresAt),
    last_seen_at: iso(row.lastSeenAt),
    running_firmware_version: running.version,
    running_firmware_source: running.source,
    target_firmware_version: row.targetVersion,
    firmware_pin_version_id: row.firmwarePinVersionId,
  };
}

export const toDevice = (row: DeviceRow, model: ModelRow, derived: Derived): Device => ({
  ...toDeviceSummary({ ...row, ...derived }),
  device_model: { id: model.id, code: model.code, name: model.name, firmware_version: model.firmwareVersion },
  config: row.config,
  client_id: row.clientId,
  last_rotation_attempt_at: iso(row.lastRotationAttemptAt),
  last_rotation_completed_at: iso(row.lastRotationCompletedAt),
  created_at: row.createdAt.toISOString(),
  updated_at: row.updatedAt.toISOString(),
});

export function createDeviceService(deps: {
  db: Database;
  identity: IdentityProvider;
  notifier: Notifier;
  schemaChecker: SchemaChecker;
  logger: Logger;
  audit: AuditRecorder;
}) {
  const { db, identity, notifier, schemaChecker, logger, audit } = deps;

  /** The config text checked against the model's schema, with the fields copied to columns of their own. */
  async function readConfig(text: string, model: ModelRow) {
    const check = await schemaChecker.checkConfig({ schema: model.configSchema, config: text, modelCode: model.code });
    if (!check.ok) throw validationFailed(check.errors, check.message);
    return { config: text, ...check.fields };
  }

  async function findWithModel(id: number) {
    const [found] = await devicesWithModels(db).where(eq(devices.id, id));
    if (!found) throw deviceNotFound(id);
    return found;
  }

  /** As findWithModel, with what its view derives (Derived). */
  async function findWithState(id: number) {
    const derived = { downloadedVersion: firmwareVersions.version, targetVersion: targetVersions.version, rotationState: rotationStateSql };
    const columns = { device: devices, model: deviceModels, derived };
    const [found] = await withVersionRows(db.select(columns).from(devices).$dynamic()).where(eq(devices.id, id));
    if (!found) throw deviceNotFound(id);
    return found;
  }

  /**
   * The row and the client are made in one transaction: the built-in provider's client joins it (see
   * db/transaction-scope.ts), and a Keycloak client made for a row that then fails to commit is deleted again.
   */
  async function insertWithClient(model: ModelRow, fields: Awaited<ReturnType<typeof readConfig>>, actor: Actor): Promise<DeviceRow> {
    const key = generateDeviceKey();
    const clientId = deviceClientId(model.code, key);
    let clientCreated = false;
    try {
      return await inTransaction(db, async (tx) => {
        const [row] = await tx.insert(devices).values({ ...fields, key, clientId, deviceModelId: model.id }).returning();
        await identity.createClient(clientId);
        clientCreated = true;
        const [withSecret] = await tx.update(devices).set({ secretCreatedAt: new Date() }).where(eq(devices.id, row!.id)).returning();
        await audit.record(tx, {
          actor,
          kind: "device.created",
          deviceId: row!.id,
          modelId: model.id,
          details: { key, client_id: clientId, model_code: model.code },
        });
        return withSecret!;
      });
    } catch (error) {
      if (clientCreated) {
        await identity.deleteClient(clientId).catch((cleanupError) =>
          logger.error("Could not remove the OAuth2 client of a device that failed to save", { client_id: clientId, error: errorMessage(cleanupError) }),
        );
      }
      throw error;
    }
  }

  return {
    findWithModel,

    /**
     * One page of the devices matching the filters, by key, after the key `after` (keyset paging, lib/paging.ts):
     * each page is one indexed query, however far into the list it starts.
     */
    async page(query: DevicePageQuery): Promise<Page<DeviceSummary>> {
      const filters: SQL[] = [];
      if (query.model_id) filters.push(eq(devices.deviceModelId, query.model_id));
      if (query.rotation_state) filters.push(rotationStateIs(query.rotation_state));
      if (query.q) filters.push(or(ilike(devices.key, containsPattern(query.q)), ilike(devices.deviceName, containsPattern(query.q)))!);
      if (query.after !== undefined) filters.push(gt(devices.key, query.after));
      const rows = await withVersionRows(db.select(summaryColumns).from(devices).$dynamic())
        .where(and(...filters))
        .orderBy(asc(devices.key))
        .limit(query.limit + 1);
      return toPage(rows.map(toDeviceSummary), query.limit, (device) => device.key);
    },

    async get(id: number): Promise<Device> {
      const { device, model, derived } = await findWithState(id);
      return toDevice(device, model, derived);
    },

    async create(input: z.output<typeof createDeviceBody>, actor: Actor): Promise<Device> {
      const [model] = await db.select().from(deviceModels).where(eq(deviceModels.id, input.device_model_id));
      if (!model) {
        throw validationFailed([{ field: "device_model_id", message: `no device model with id ${input.device_model_id}` }], `Device model ${input.device_model_id} does not exist.`);
      }
      const fields = await readConfig(input.config, model);
      for (let attempt = 1; ; attempt++) {
        try {
          return toDevice(await insertWithClient(model, fields, actor), model, { downloadedVersion: null, targetVersion: model.firmwareVersion, rotationState: "OK" });
        } catch (error) {
          if (!isUniqueViolation(error) || attempt >= 5) throw error;
        }
      }
    },

    async update(id: number, input: z.output<typeof updateDeviceBody>, actor: Actor): Promise<Device> {
      const { model, derived } = await findWithState(id);
      const fields = await readConfig(input.config, model);
      const row = await db.transaction(async (tx) => {
        const [before] = await tx.select({ config: devices.config }).from(devices).where(eq(devices.id, id)).for("update");
        if (!before) throw deviceNotFound(id);
        const [row] = await tx.update(devices).set({ ...fields, updatedAt: new Date() }).where(eq(devices.id, id)).returning();
        await audit.record(tx, {
          actor,
          kind: "device.updated",
          deviceId: id,
          modelId: row!.deviceModelId,
          details: { key: row!.key, changed_fields: changedConfigFields(before.config, row!.config) },
        });
        return row!;
      });
      await notifier.publish("config", row.clientId, { device_key: row.key });
      return toDevice(row, model, derived);
    },

    async remove(id: number, actor: Actor): Promise<void> {
      await inTransaction(db, async (tx) => {
        const [row] = await tx
          .delete(devices)
          .where(eq(devices.id, id))
          .returning({ clientId: devices.clientId, key: devices.key, modelId: devices.deviceModelId });
        if (!row) throw deviceNotFound(id);
        await audit.record(tx, { actor, kind: "device.deleted", deviceId: id, modelId: row.modelId, details: { key: row.key, client_id: row.clientId } });
        // Inside the transaction: if the provider refuses, the device row stays as well.
        await identity.deleteClient(row.clientId);
      });
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
