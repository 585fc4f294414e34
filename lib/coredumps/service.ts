/**
 * Core dumps (docs/device-logs.md, "Core dumps"): the ELF a device uploads after a crash, stored as sent with its
 * device, chip, firmware version and time; the newest few per device, none older than the retention. Crashes are
 * counted per model and firmware version, so a rollout's crash rate can be seen.
 */
import { createHash } from "node:crypto";
import { and, count, desc, eq, gte, lt, notInArray } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { type CoreDumpRow, coreDumps, firmwareVersions } from "../../db/schema.ts";
import { notFound } from "../errors.ts";

export type CoreDumpSummary = {
  id: number;
  device_id: number;
  chip: string | null;
  firmware_version: string | null;
  size: number;
  sha256: string;
  received_at: string;
};

export type CoreDump = CoreDumpSummary & { content: Buffer };

export type NewCoreDump = { deviceId: number; deviceModelId: number; chip: string | null; firmwareVersion: string | null; content: Buffer };

/** Counts a stored crash under its model's code and firmware version (see crashLabel). */
export type CrashCounter = { inc(labels: { model: string; firmware_version: string }): void };

/**
 * The version label of a crash: only a firmware version the model has becomes a label, so a device cannot add metric
 * series by sending made-up versions; any other is "unknown".
 */
export async function crashLabel(service: Pick<CoreDumpService, "isKnownVersion">, modelId: number, version: string | null): Promise<string> {
  return version !== null && (await service.isKnownVersion(modelId, version)) ? version : "unknown";
}

export type CoreDumpSettings = { maxPerDevice: number; retentionDays: number };

export type CoreDumpService = {
  /** Stores a dump and drops the device's oldest beyond the limit; answers what was stored. */
  save(dump: NewCoreDump): Promise<CoreDumpSummary>;
  /** A device's dumps, newest first. */
  list(deviceId: number): Promise<CoreDumpSummary[]>;
  /** One dump of the device with its bytes; 404 when the device has no such dump. */
  get(deviceId: number, id: number): Promise<CoreDump>;
  remove(deviceId: number, id: number): Promise<void>;
  /** Crashes per firmware version of a model since `since` (the version is null when the device did not say). */
  crashCounts(modelId: number, since: Date): Promise<{ firmware_version: string | null; crashes: number }[]>;
  /** Whether `version` is a firmware version of the model (only those become metric labels). */
  isKnownVersion(modelId: number, version: string): Promise<boolean>;
  /** Deletes dumps older than the retention; answers how many went. */
  runRetention(now?: Date): Promise<number>;
};

const DAY_MS = 86_400_000;

export const coreDumpNotFound = (id: number) => notFound(`Core dump ${id} does not exist for this device.`, "CORE_DUMP_NOT_FOUND");

export function summarize(row: Omit<CoreDumpRow, "content" | "deviceModelId">): CoreDumpSummary {
  return {
    id: row.id,
    device_id: row.deviceId,
    chip: row.chip,
    firmware_version: row.firmwareVersion,
    size: row.size,
    sha256: row.sha256,
    received_at: row.receivedAt.toISOString(),
  };
}

const summaryColumns = {
  id: coreDumps.id,
  deviceId: coreDumps.deviceId,
  chip: coreDumps.chip,
  firmwareVersion: coreDumps.firmwareVersion,
  size: coreDumps.size,
  sha256: coreDumps.sha256,
  receivedAt: coreDumps.receivedAt,
};

export function createCoreDumpService(db: Database, settings: CoreDumpSettings): CoreDumpService {
  return {
    async save(dump) {
      const sha256 = createHash("sha256").update(dump.content).digest("hex");
      return db.transaction(async (tx) => {
        const [row] = await tx
          .insert(coreDumps)
          .values({ ...dump, size: dump.content.length, sha256 })
          .returning(summaryColumns);
        const keep = tx
          .select({ id: coreDumps.id })
          .from(coreDumps)
          .where(eq(coreDumps.deviceId, dump.deviceId))
          .orderBy(desc(coreDumps.receivedAt), desc(coreDumps.id))
          .limit(settings.maxPerDevice);
        await tx.delete(coreDumps).where(and(eq(coreDumps.deviceId, dump.deviceId), notInArray(coreDumps.id, keep)));
        return summarize(row!);
      });
    },
    async list(deviceId) {
      const rows = await db.select(summaryColumns).from(coreDumps).where(eq(coreDumps.deviceId, deviceId)).orderBy(desc(coreDumps.receivedAt), desc(coreDumps.id));
      return rows.map(summarize);
    },
    async get(deviceId, id) {
      const [row] = await db.select().from(coreDumps).where(and(eq(coreDumps.deviceId, deviceId), eq(coreDumps.id, id)));
      if (!row) throw coreDumpNotFound(id);
      return { ...summarize(row), content: row.content };
    },
    async remove(deviceId, id) {
      const gone = await db.delete(coreDumps).where(and(eq(coreDumps.deviceId, deviceId), eq(coreDumps.id, id))).returning({ id: coreDumps.id });
      if (gone.length === 0) throw coreDumpNotFound(id);
    },
    async crashCounts(modelId, since) {
      const rows = await db
        .select({ firmware_version: coreDumps.firmwareVersion, crashes: count() })
        .from(coreDumps)
        .where(and(eq(coreDumps.deviceModelId, modelId), gte(coreDumps.receivedAt, since)))
        .groupBy(coreDumps.firmwareVersion)
        .orderBy(coreDumps.firmwareVersion);
      return rows.map((row) => ({ firmware_version: row.firmware_version, crashes: Number(row.crashes) }));
    },
    async isKnownVersion(modelId, version) {
      const [found] = await db
        .select({ id: firmwareVersions.id })
        .from(firmwareVersions)
        .where(and(eq(firmwareVersions.deviceModelId, modelId), eq(firmwareVersions.version, version)))
        .limit(1);
      return found !== undefined;
    },
    async runRetention(now = new Date()) {
      const gone = await db
        .delete(coreDumps)
        .where(lt(coreDumps.receivedAt, new Date(now.getTime() - settings.retentionDays * DAY_MS)))
        .returning({ id: coreDumps.id });
      return gone.length;
    },
  };
}

