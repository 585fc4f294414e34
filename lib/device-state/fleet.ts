import type { Fleet } from "../schemas.ts";

export const DEFAULT_STALE_HOURS = 24;

/**
 * Devices of a model that run the same version and should run the same version (null: unknown, or none), and how
 * many of them are stale. The database groups them (lib/device-state/service.ts), so the view costs one small
 * answer however many devices there are.
 */
export type FleetGroup = { running: string | null; target: string | null; devices: number; stale: number };

/** Devices per running and per target version, stale devices, devices whose known running version is not their target. */
export function countFleet(groups: FleetGroup[]): Fleet {
  const counts = new Map<string | null, { version: string | null; running: number; target: number }>();
  const entry = (version: string | null) => counts.get(version) ?? counts.set(version, { version, running: 0, target: 0 }).get(version)!;
  let stale = 0;
  let mismatched = 0;
  for (const group of groups) {
    entry(group.running).running += group.devices;
    entry(group.target).target += group.devices;
    stale += group.stale;
    if (group.running !== null && group.running !== group.target) mismatched += group.devices;
  }
  const versions = [...counts.values()].sort((a, b) => b.running - a.running || b.target - a.target || String(a.version).localeCompare(String(b.version)));
  return { versions, stale, mismatched };
}

/** Crashes (core dumps) per firmware version, added to the fleet's versions; a version only crashes have is added too. */
export function withCrashes(fleet: Fleet, crashes: { firmware_version: string | null; crashes: number }[]): Fleet {
  const versions = fleet.versions.map((entry) => ({ ...entry, crashes: 0 }));
  for (const { firmware_version: version, crashes: count } of crashes) {
    const entry = versions.find((candidate) => candidate.version === version);
    if (entry) entry.crashes += count;
    else versions.push({ version, running: 0, target: 0, crashes: count });
  }
  return { ...fleet, versions };
}
