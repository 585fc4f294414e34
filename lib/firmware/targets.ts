/**
 * Which firmware a device should run: its **target** (docs/rollouts.md): its pin if an admin set one, else the version
 * a rollout gave it, else its model's stable version. Every reader of a target (the device API, the admin views, the
 * fleet counts — in SQL as `targetVersionIdSql`) follows this one rule.
 */
import { eq, sql } from "drizzle-orm";
import { alias, type PgSelect } from "drizzle-orm/pg-core";
import { LRUCache } from "lru-cache";
import type { Database } from "../../db/client.ts";
import { type DeviceRow, deviceModels, devices, firmwareVersions, type ModelRow } from "../../db/schema.ts";
import type { TargetFirmware } from "../schemas.ts";
import type { VersionRow } from "./versions.ts";

export type TargetInputs = { device: Pick<DeviceRow, "firmwarePinVersionId" | "rolloutVersionId" | "rolloutId">; model: Pick<ModelRow, "stableVersionId"> };

export const targetVersionId = ({ device, model }: TargetInputs): number | null =>
  device.firmwarePinVersionId ?? device.rolloutVersionId ?? model.stableVersionId;

/** The rollout a device's target comes from, or null (its pin or its model's stable version). */
export const targetRolloutId = ({ firmwarePinVersionId, rolloutVersionId, rolloutId }: TargetInputs["device"]): number | null =>
  firmwarePinVersionId === null && rolloutVersionId !== null ? rolloutId : null;

/** targetVersionId in SQL, for queries joining devices with their models. */
export const targetVersionIdSql = sql<number | null>`coalesce(${devices.firmwarePinVersionId}, ${devices.rolloutVersionId}, ${deviceModels.stableVersionId})`;

/** The version row of a device's target, beside `firmwareVersions` as the row of its last full download. */
export const targetVersions = alias(firmwareVersions, "target_version");

/**
 * A select from devices joined with their model, the version of their last full download (`firmwareVersions`) and
 * that of their target (`targetVersions`), either missing when there is none.
 */
export const withVersionRows = <T extends PgSelect>(query: T) =>
  query
    .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
    .leftJoin(firmwareVersions, eq(devices.downloadedVersionId, firmwareVersions.id))
    .leftJoin(targetVersions, eq(targetVersions.id, targetVersionIdSql));

/** The answer when a device has no target (its model has no firmware). */
export const NO_TARGET: TargetFirmware = { firmware_version: null, version_id: null, sha256: null, size: null, elf_sha256: null, secure_version: null, rollout_id: null };

type Described = Pick<VersionRow, "version" | "sha256" | "size" | "elfSha256" | "secureVersion">;

export const describeTarget = (versionId: number, row: Described, rolloutId: number | null): TargetFirmware => ({
  firmware_version: row.version,
  version_id: versionId,
  sha256: row.sha256,
  size: row.size,
  elf_sha256: row.elfSha256,
  secure_version: row.secureVersion,
  rollout_id: rolloutId,
});

/**
 * The target of a device as the device API describes it. What a version says never changes (lib/firmware/versions.ts),
 * so each is read once per process and kept: a poll costs no query for it.
 */
export function createTargetDescriptions(db: Database) {
  const described = new LRUCache<number, Described>({ max: 1000 });
  /** The version `versionId` as the device API describes it (null: no target). */
  async function describe(versionId: number | null, rolloutId: number | null): Promise<TargetFirmware> {
    if (versionId === null) return NO_TARGET;
    let row = described.get(versionId);
    if (!row) {
      const columns = { version: firmwareVersions.version, sha256: firmwareVersions.sha256, size: firmwareVersions.size, elfSha256: firmwareVersions.elfSha256, secureVersion: firmwareVersions.secureVersion };
      [row] = await db.select(columns).from(firmwareVersions).where(eq(firmwareVersions.id, versionId));
      // Deleted meanwhile (it is no longer the target either): nothing to serve.
      if (!row) return NO_TARGET;
      described.set(versionId, row);
    }
    return describeTarget(versionId, row, rolloutId);
  }
  return (inputs: TargetInputs) => describe(targetVersionId(inputs), targetRolloutId(inputs.device));
}
