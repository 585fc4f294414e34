/**
 * What devices report and what the backend observes of them (docs/firmware.md, "What a device runs"): sightings and
 * header reports (./seen.ts), explicit reports (POST /iot/state), full downloads, and the fleet counts built on them.
 */
import { eq, sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { deviceModels, devices, firmwareVersions, type StateReport } from "../../db/schema.ts";
import { modelNotFound } from "../errors.ts";
import { createTargetDescriptions, targetVersions, withVersionRows } from "../firmware/targets.ts";
import type { DevicePrincipal } from "../identity/principal.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import type { Fleet, TargetFirmware } from "../schemas.ts";
import { countFleet, type FleetGroup } from "./fleet.ts";
import { runningVersionSql } from "./running.ts";
import { readHeaderReport, reportedColumns } from "./reports.ts";
import { createSeenBuffer } from "./seen.ts";

const HOUR_MS = 3_600_000;

export function createDeviceStateService(deps: { db: Database; logger: Logger; metrics: Metrics; flushEveryMs?: number }) {
  const { db, logger, metrics } = deps;
  const seen = createSeenBuffer({
    db,
    logger,
    flushEveryMs: deps.flushEveryMs,
    counters: { written: (rows) => metrics.deviceStateWrites.inc(rows), dropped: (sightings) => metrics.deviceSightingsDropped.inc(sightings) },
  });
  const targetFirmware = createTargetDescriptions(db);

  /** The fleet groups (./fleet.ts) of one model, or of every model (by code), counted in the database. */
  function fleetGroups(staleHours: number) {
    const running = runningVersionSql(sql`${firmwareVersions.version}`);
    const staleBefore = new Date(Date.now() - staleHours * HOUR_MS);
    const counted = db
      .select({
        code: deviceModels.code,
        running,
        target: targetVersions.version,
        devices: sql<number>`count(*)`.mapWith(Number),
        stale: sql<number>`count(*) filter (where ${devices.lastSeenAt} is null or ${devices.lastSeenAt} < ${staleBefore.toISOString()}::timestamptz)`.mapWith(Number),
      })
      .from(devices)
      .$dynamic();
    return withVersionRows(counted).groupBy(deviceModels.code, running, targetVersions.version);
  }

  return {
    /** An authenticated device request: noted for last_seen_at with what its headers report (malformed ones counted, ignored). */
    seen(principal: DevicePrincipal, headers: Headers): void {
      const { report, bad } = readHeaderReport(headers);
      for (const header of bad) metrics.deviceReportHeadersIgnored.inc({ header });
      seen.note(principal.device, new Date(), report);
    },

    /** POST /iot/state: stored at once; fields it leaves out keep what an earlier report said. */
    async report(principal: DevicePrincipal, report: StateReport): Promise<void> {
      await db.update(devices).set(reportedColumns(report, new Date())).where(eq(devices.id, principal.device.id));
    },

    /** The last byte of a full image with this SHA-256 went out to the device. Written with the next flush (./seen.ts). */
    downloaded(principal: DevicePrincipal, sha256: string): void {
      seen.downloaded(principal.device.id, principal.model.id, sha256, new Date());
    },

    /** The device's target firmware (lib/firmware/targets.ts). */
    target: (principal: DevicePrincipal): Promise<TargetFirmware> => targetFirmware(principal),

    /** GET /api/device-models/{id}/fleet. */
    async fleet(modelId: number, staleHours: number): Promise<Fleet> {
      const [model] = await db.select({ id: deviceModels.id }).from(deviceModels).where(eq(deviceModels.id, modelId));
      if (!model) throw modelNotFound(modelId);
      return countFleet(await fleetGroups(staleHours).where(eq(devices.deviceModelId, modelId)));
    },

    /** The fleet of every model, by model code (the /metrics gauges). */
    async fleets(staleHours: number): Promise<Map<string, Fleet>> {
      const byModel = new Map<string, FleetGroup[]>();
      for (const group of await fleetGroups(staleHours)) (byModel.get(group.code) ?? byModel.set(group.code, []).get(group.code)!).push(group);
      return new Map([...byModel].map(([code, groups]) => [code, countFleet(groups)]));
    },

    /** Writes the sightings and downloads waiting in memory now (tests, benchmarks). */
    flush: () => seen.flush(),
    /** Stops the background writes after writing what is pending (at shutdown, after the last response, before the database closes). */
    close: () => seen.close(),
  };
}

export type DeviceStateService = ReturnType<typeof createDeviceStateService>;
