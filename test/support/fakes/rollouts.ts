/**
 * RolloutService over the shared rows, for what the unit layer runs: uploads that make a version stable at once
 * (`immediate`, or a staged rollout with no device to stage), and the upload pre-flight (lib/rollouts/preflight.ts's
 * own rule). Rollouts that admit devices run only against PostgreSQL (test/rollouts*.test.ts); asked for one, this
 * fake throws rather than pretend. Held to the real service by test/rollouts-contract.test.ts.
 */
import { stableCopy } from "../../../lib/firmware/versions.ts";
import type { Notifier } from "../../../lib/mqtt.ts";
import { refusalOf } from "../../../lib/rollouts/preflight.ts";
import type { RolloutService } from "../../../lib/rollouts/service.ts";
import type { RolloutRow } from "../../../db/schema.ts";
import type { FakeWorld } from "./world.ts";

const unsupported = () => {
  throw new Error("rollouts that stage devices run against PostgreSQL only (test/rollouts.test.ts)");
};

export function fakeRolloutService(world: FakeWorld, notifier: Notifier): RolloutService {
  let nextRollout = 0;
  const devicesOf = (modelId: number) => [...world.devices.values()].filter((device) => device.deviceModelId === modelId);
  const runningSecureVersion = (modelId: number) => {
    const reported = new Set(devicesOf(modelId).map((device) => device.reportedFirmwareVersion));
    const versions = [...world.versions.values()].filter((version) => version.deviceModelId === modelId && reported.has(version.version) && version.secureVersion !== null);
    return versions.length === 0 ? null : Math.max(...versions.map((version) => version.secureVersion!));
  };

  return {
    downloaded() {},
    configFetched() {},
    flush: async () => {},
    async check(model, candidate, confirmed) {
      const existing = [...world.versions.values()].find((version) => version.deviceModelId === model.id && version.version === candidate.version);
      const refusal = refusalOf(model, { ...candidate, id: existing?.id }, confirmed, runningSecureVersion(model.id));
      if (refusal) throw refusal;
    },
    async afterUpload(model, version, mode, _confirmed, actor) {
      const row = world.models.get(model.id)!;
      const previousVersionId = row.stableVersionId;
      const needing = devicesOf(model.id).filter((device) => device.firmwarePinVersionId === null && (device.rolloutVersionId ?? row.stableVersionId) !== version.id);
      if (mode === "staged" && needing.length > 0) unsupported();
      for (const device of devicesOf(model.id)) device.rolloutVersionId = null;
      Object.assign(row, stableCopy(version));
      if (mode === "immediate") {
        for (const device of devicesOf(model.id)) {
          if (device.firmwarePinVersionId === null) await notifier.publish("firmware", device.clientId, { firmware_version: version.version });
        }
        return null;
      }
      const now = new Date();
      const rollout: RolloutRow = {
        id: ++nextRollout,
        deviceModelId: model.id,
        versionId: version.id,
        previousVersionId,
        state: "completed",
        plan: { canary_device_ids: [], canary_count: 1, waves: [10, 50, 100], soak_seconds: 600, wave_timeout_seconds: 3600, max_concurrent: 10, failure_threshold_percent: 2 },
        currentWave: 0,
        waveStartedAt: now,
        waveDoneAt: null,
        failuresAcknowledged: 0,
        pauseReason: null,
        createdBy: actor,
        completedAt: now,
        createdAt: now,
        updatedAt: now,
      };
      return rollout;
    },
    create: unsupported,
    list: unsupported,
    get: unsupported,
    pause: unsupported,
    resume: unsupported,
    advance: unsupported,
    abort: unsupported,
    revert: unsupported,
    retry: unsupported,
    pin: unsupported,
    tick: async () => 0,
  };
}
