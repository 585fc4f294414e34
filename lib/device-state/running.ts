import { type SQL, sql } from "drizzle-orm";
import { type DeviceRow, devices } from "../../db/schema.ts";

export const runningSources = ["reported", "inferred", "unknown"] as const;
export type RunningSource = (typeof runningSources)[number];

/** The device row's columns the rule reads, and the version string of its last full download (null: none). */
export type RunningInputs = Pick<DeviceRow, "reportedFirmwareVersion" | "lastSeenAt" | "downloadedAt"> & { downloadedVersion: string | null };

/**
 * Which firmware a device runs, and how that is known (docs/firmware.md, "What a device runs"):
 * - `reported`: the device said so (X-Firmware-Version or POST /iot/state); its last report wins;
 * - `inferred`: it never reported, but after the last byte of a full download of V went out it authenticated again.
 *   Deployed firmware restarts as soon as an image is written (CONTRACT §10), so a later request comes from the
 *   restarted device, which runs V (unless its bootloader rolled it back: only a report can tell);
 * - `unknown`: neither.
 */
export function runningFirmware(device: RunningInputs): { version: string | null; source: RunningSource } {
  if (device.reportedFirmwareVersion !== null) return { version: device.reportedFirmwareVersion, source: "reported" };
  const { downloadedVersion, downloadedAt, lastSeenAt } = device;
  if (downloadedVersion !== null && downloadedAt !== null && lastSeenAt !== null && lastSeenAt > downloadedAt) {
    return { version: downloadedVersion, source: "inferred" };
  }
  return { version: null, source: "unknown" };
}

/** runningFirmware's version in SQL, over devices joined with the version of their last full download (`downloaded`). */
export const runningVersionSql = (downloaded: SQL): SQL<string | null> =>
  sql<string | null>`coalesce(${devices.reportedFirmwareVersion}, case when ${downloaded} is not null and ${devices.lastSeenAt} > ${devices.downloadedAt} then ${downloaded} end)`;
