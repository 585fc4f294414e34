import type { Fleet } from "../schemas.ts";
import { runningFirmware, type RunningInputs } from "./running.ts";

export const DEFAULT_STALE_HOURS = 24;

/** One device as the fleet view counts it: what it runs and what it should run (null: nothing). */
export type FleetRow = RunningInputs & { target: string | null };

/** Devices per running and per target version, devices not seen since `staleBefore`, known running ≠ target. */
export function countFleet(rows: FleetRow[], staleBefore: Date): Fleet {
  const counts = new Map<string | null, { version: string | null; running: number; target: number }>();
  const entry = (version: string | null) => counts.get(version) ?? counts.set(version, { version, running: 0, target: 0 }).get(version)!;
  let stale = 0;
  let mismatched = 0;
  for (const row of rows) {
    const running = runningFirmware(row).version;
    entry(running).running++;
    entry(row.target).target++;
    if (row.lastSeenAt === null || row.lastSeenAt < staleBefore) stale++;
    if (running !== null && running !== row.target) mismatched++;
  }
  const versions = [...counts.values()].sort((a, b) => b.running - a.running || b.target - a.target || String(a.version).localeCompare(String(b.version)));
  return { versions, stale, mismatched };
}
