/**
 * Which firmware a device should run: its **target**. Today that is its model's stable version for every device;
 * per-device pins and rollout waves (issue 13 §3) are decided here, before that fallback, so that every reader of a
 * target (the device API, the admin views, the fleet counts) follows them at once.
 */
import { eq } from "drizzle-orm";
import { LRUCache } from "lru-cache";
import type { Database } from "../../db/client.ts";
import { type DeviceRow, firmwareVersions, type ModelRow } from "../../db/schema.ts";
import type { TargetFirmware } from "../schemas.ts";
import type { VersionRow } from "./versions.ts";

export type Target = { versionId: number; version: string };

export function targetOf(_device: Pick<DeviceRow, "id">, model: Pick<ModelRow, "stableVersionId" | "firmwareVersion">): Target | null {
  const { stableVersionId, firmwareVersion } = model;
  return stableVersionId === null || firmwareVersion === null ? null : { versionId: stableVersionId, version: firmwareVersion };
}

/** The answer when a device has no target (its model has no firmware). */
export const NO_TARGET: TargetFirmware = { firmware_version: null, version_id: null, sha256: null, size: null, elf_sha256: null, secure_version: null };

type Described = Pick<VersionRow, "version" | "sha256" | "size" | "elfSha256" | "secureVersion">;

export const describeTarget = (versionId: number, row: Described): TargetFirmware => ({
  firmware_version: row.version,
  version_id: versionId,
  sha256: row.sha256,
  size: row.size,
  elf_sha256: row.elfSha256,
  secure_version: row.secureVersion,
});

/**
 * The target of a device as the device API describes it. What a version says never changes (lib/firmware/versions.ts),
 * so each is read once per process and kept: a poll costs no query for it.
 */
export function createTargetDescriptions(db: Database) {
  const described = new LRUCache<number, Described>({ max: 1000 });
  return async function targetFirmware(device: Pick<DeviceRow, "id">, model: ModelRow): Promise<TargetFirmware> {
    const target = targetOf(device, model);
    if (!target) return NO_TARGET;
    let row = described.get(target.versionId);
    if (!row) {
      const columns = { version: firmwareVersions.version, sha256: firmwareVersions.sha256, size: firmwareVersions.size, elfSha256: firmwareVersions.elfSha256, secureVersion: firmwareVersions.secureVersion };
      [row] = await db.select(columns).from(firmwareVersions).where(eq(firmwareVersions.id, target.versionId));
      // Deleted meanwhile (it is no longer the target either): nothing to serve.
      if (!row) return NO_TARGET;
      described.set(target.versionId, row);
    }
    return describeTarget(target.versionId, row);
  };
}
