/**
 * What a rollout makes of one admitted or succeeded device, from what it saw the device do (lib/rollouts/events.ts)
 * and what the device reported (lib/device-state/). The rules are in docs/rollouts.md, "When a device succeeds".
 */
import type { DeviceRow, RolloutDeviceRow } from "../../db/schema.ts";

export type Observed = Pick<RolloutDeviceRow, "state" | "admittedAt" | "firstDownloadAt" | "lastDownloadAt" | "downloads" | "restartsAfterDownload" | "configAt"> &
  Pick<DeviceRow, "lastSeenAt" | "reportedFirmwareVersion" | "reportedAt" | "otaState" | "lastStateReport"> & {
    /** It uploaded a core dump from the rollout's version since it was admitted. */
    crashed: boolean;
  };

export type Verdict = { state: "succeeded" } | { state: "failed"; reason: string } | { state: "pending"; reason: string } | null;

const failed = (reason: string): Verdict => ({ state: "failed", reason });

/** `target`: the rollout's version string; null: nothing changes. */
export function verdictOf(device: Observed, target: string, now: Date, waveTimeoutMs: number): Verdict {
  const admittedAt = device.admittedAt!;
  if (device.restartsAfterDownload > 1) return failed("downloaded the image again after restarting on it (suspected rollback loop)");
  if (device.crashed) return failed(`crashed running ${target} (it uploaded a core dump)`);
  const reportedSinceAdmission = device.reportedAt !== null && device.reportedAt >= admittedAt;
  if (reportedSinceAdmission) {
    if (device.lastStateReport?.last_invalid_version === target) return failed(`reported ${target} as its last invalid version`);
    const running = device.reportedFirmwareVersion;
    if ((device.otaState === "rolled_back" || device.otaState === "invalid") && running !== target) return failed(`reported a rollback (OTA state ${device.otaState}, running ${running ?? "unknown"})`);
    if (device.lastDownloadAt !== null && device.reportedAt! > device.lastDownloadAt && running !== null && running !== target) {
      return failed(`reported running ${running} after downloading ${target}`);
    }
  }
  if (device.state === "succeeded") return null;

  // Proven: it fetched its config after its first full download (or, already running the target, after admission),
  // and runs the target as far as it says (a device that never reported is inferred to). Not after its last: a device
  // that runs the image receives it in full again when its next boot's check (which it aborts after the first
  // block) finds the server had already sent the rest.
  const { configAt, firstDownloadAt } = device;
  const configured = configAt !== null && (firstDownloadAt === null ? configAt >= admittedAt : configAt > firstDownloadAt);
  const runsTarget = device.reportedFirmwareVersion === null ? firstDownloadAt !== null : device.reportedFirmwareVersion === target;
  if (configured && runsTarget) return { state: "succeeded" };

  if (now.getTime() - admittedAt.getTime() < waveTimeoutMs) return null;
  const seenSinceAdmission = device.configAt !== null || (device.lastSeenAt !== null && device.lastSeenAt >= admittedAt);
  // Offline since it was admitted, nothing downloaded: it never started, so it waits for its next sighting.
  if (device.downloads === 0 && !seenSinceAdmission) return { state: "pending", reason: "offline since it was admitted" };
  return failed(`did not succeed within the wave timeout (${Math.round(waveTimeoutMs / 1000)} s)`);
}
