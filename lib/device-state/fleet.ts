import { sql } from "drizzle-orm";
import { devices, firmwareVersions } from "../../db/schema.ts";
import type { Fleet } from "../schemas.ts";
import { runningFirmware, type RunningInputs } from "./running.ts";

export const DEFAULT_STALE_HOURS = 24;

/** One device as the fleet view counts it: what it runs and what it should run (null: nothing). */
export type FleetRow = RunningInputs & { target: string | null };

/** The devices that run one version and should run another, counted (in SQL by the service, one by one by a fake). */
export type FleetGroup = { running: string | null; target: string | null; devices: number; stale: number; mismatched: number };

/** runningFirmware(…).version in SQL, over devices joined with the firmware version of their last full download. */
export const runningVersionSql = sql<string | null>`case
  when ${devices.reportedFirmwareVersion} is not null then ${devices.reportedFirmwareVersion}
  when ${firmwareVersions.version} is not null and ${devices.downloadedAt} is not null and ${devices.lastSeenAt} > ${devices.downloadedAt} then ${firmwareVersions.version}
end`;

/** One device as a group of its own: not seen since `staleBefore` is stale, a known running version ≠ target mismatched. */
export function fleetGroupOf(row: FleetRow, staleBefore: Date): FleetGroup {
  const running = runningFirmware(row).version;
  const stale = row.lastSeenAt === null || row.lastSeenAt < staleBefore ? 1 : 0;
  return { running, target: row.target, devices: 1, stale, mismatched: running !== null && running !== row.target ? 1 : 0 };
}

/** Devices per running and per target version, devices not seen for a while, known running ≠ target. */
export function countFleet(groups: FleetGroup[]): Fleet {
  const counts = new Map<string | null, { version: string | null; running: number; target: number }>();
  const entry = (version: string | null) => counts.get(version) ?? counts.set(version, { version, running: 0, target: 0 }).get(version)!;
  let stale = 0;
  let mismatched = 0;
  for (const group of groups) {
    entry(group.running).running += group.devices;
    entry(group.target).target += group.devices;
    stale += group.stale;
    mismatched += group.mismatched;
  }
  const versions = [...counts.values()].sort((a, b) => b.running - a.running || b.target - a.target || String(a.version).localeCompare(String(b.version)));
  return { versions, stale, mismatched };
}
