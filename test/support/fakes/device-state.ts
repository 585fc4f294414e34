/**
 * DeviceStateService over the shared rows. A sighting is applied at once (the real service coalesces them in memory
 * and writes them in the background: test/device-state.test.ts holds it to the same results after a flush); the
 * rules — when a sighting is due, what reports change, running and target firmware, fleet counts — are the real ones.
 */
import type { DeviceRow } from "../../../db/schema.ts";
import { countFleet, type FleetGroup } from "../../../lib/device-state/fleet.ts";
import { runningFirmware } from "../../../lib/device-state/running.ts";
import { readHeaderReport, reportedColumns } from "../../../lib/device-state/reports.ts";
import { isDue } from "../../../lib/device-state/seen.ts";
import type { DeviceStateService } from "../../../lib/device-state/service.ts";
import { modelNotFound } from "../../../lib/errors.ts";
import { describeTarget, NO_TARGET, targetRolloutId, targetVersionId } from "../../../lib/firmware/targets.ts";
import type { Metrics } from "../../../lib/metrics.ts";
import { type FakeWorld, derivedOf } from "./world.ts";

const HOUR_MS = 3_600_000;

export function fakeDeviceStateService(world: FakeWorld, metrics: Metrics): DeviceStateService {
  const rowOf = (id: number) => world.devices.get(id);

  /** Each device a group of its own (the real service has the database group them). */
  function fleetGroup(device: DeviceRow, staleBefore: Date): FleetGroup {
    const { downloadedVersion, targetVersion } = derivedOf(world, device);
    const running = runningFirmware({ ...device, downloadedVersion }).version;
    return { running, target: targetVersion, devices: 1, stale: device.lastSeenAt === null || device.lastSeenAt < staleBefore ? 1 : 0 };
  }

  return {
    seen(principal, headers) {
      const { report, bad } = readHeaderReport(headers);
      for (const header of bad) metrics.deviceReportHeadersIgnored.inc({ header });
      const now = new Date();
      const row = rowOf(principal.device.id);
      if (!row || !isDue(row, now, report)) return;
      const reported = Object.entries({ reportedFirmwareVersion: report.firmware_version, reportedElfSha256: report.elf_sha256, otaState: report.ota_state }).filter(
        ([column, value]) => value !== undefined && value !== row[column as keyof DeviceRow],
      );
      Object.assign(row, Object.fromEntries(reported), { lastSeenAt: now }, reported.length > 0 && { reportedAt: now });
      metrics.deviceStateWrites.inc();
    },
    async report(principal, report) {
      const row = rowOf(principal.device.id);
      if (!row) return;
      Object.assign(row, reportedColumns(report, new Date()));
    },
    downloaded(principal, sha256) {
      const row = rowOf(principal.device.id);
      const version = [...world.versions.values()].find((v) => v.deviceModelId === principal.model.id && v.sha256 === sha256);
      if (row) Object.assign(row, { downloadedVersionId: version?.id ?? null, downloadedAt: new Date() });
    },
    async target({ device, model }) {
      const versionId = targetVersionId({ device, model });
      const version = versionId === null ? undefined : world.versions.get(versionId);
      return version ? describeTarget(version.id, version, targetRolloutId(device)) : NO_TARGET;
    },
    async fleet(modelId, staleHours) {
      if (!world.models.has(modelId)) throw modelNotFound(modelId);
      const staleBefore = new Date(Date.now() - staleHours * HOUR_MS);
      return countFleet([...world.devices.values()].filter((device) => device.deviceModelId === modelId).map((device) => fleetGroup(device, staleBefore)));
    },
    async fleets(staleHours) {
      const staleBefore = new Date(Date.now() - staleHours * HOUR_MS);
      const codes = [...world.models.values()].map((model) => [model.id, model.code] as const);
      return new Map(
        codes.map(([id, code]) => [code, countFleet([...world.devices.values()].filter((device) => device.deviceModelId === id).map((device) => fleetGroup(device, staleBefore)))]),
      );
    },
    flush: async () => {},
    close: async () => {},
  };
}
