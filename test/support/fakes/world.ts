/** The rows the in-memory fakes share, shaped as the real services read them from PostgreSQL. */
import type { DeviceRow, ModelRow } from "../../../db/schema.ts";
import { targetVersionId } from "../../../lib/firmware/targets.ts";
import type { VersionRow } from "../../../lib/firmware/versions.ts";

export type FakeWorld = {
  models: Map<number, ModelRow>;
  devices: Map<number, DeviceRow>;
  /** Firmware versions; deleting a model deletes its versions (ON DELETE CASCADE). */
  versions: Map<number, VersionRow>;
  nextId(): number;
};

/** The version string of a device's last full download (what the real services join from firmware_versions). */
const versionOf = (world: FakeWorld, id: number | null) => (id === null ? null : (world.versions.get(id)?.version ?? null));

/** The version strings of a device's last full download and of its target (lib/firmware/targets.ts). */
/** What a device view derives from more than the row (lib/devices.ts); the fake keeps QUEUED in its rows, having no queue table. */
export const derivedOf = (world: FakeWorld, device: DeviceRow) => ({
  downloadedVersion: versionOf(world, device.downloadedVersionId),
  targetVersion: versionOf(world, targetVersionId({ device, model: world.models.get(device.deviceModelId)! })),
  rotationState: device.rotationState,
});

export function createWorld(): FakeWorld {
  let id = 0;
  return { models: new Map(), devices: new Map(), versions: new Map(), nextId: () => ++id };
}

export function newModelRow(id: number, fields: Pick<ModelRow, "code" | "name" | "configSchema">): ModelRow {
  const now = new Date();
  return {
    id,
    ...fields,
    stableVersionId: null,
    firmwareVersion: null,
    firmwareFile: null,
    firmwareSha256: null,
    firmwareSize: null,
    firmwareProjectName: null,
    firmwareIdfVersion: null,
    firmwareChip: null,
    firmwareUploadedAt: null,
    firmwareRollout: "staged",
    createdAt: now,
    updatedAt: now,
  };
}

export function newDeviceRow(id: number, fields: Pick<DeviceRow, "key" | "deviceModelId" | "clientId" | "config" | "deviceName" | "deviceEntityId" | "enableOta">): DeviceRow {
  const now = new Date();
  return {
    id,
    ...fields,
    rotationState: "OK",
    secretCreatedAt: now,
    lastRotationAttemptAt: null,
    lastRotationCompletedAt: null,
    rotationStartedAt: null,
    newSecretIssuedAt: null,
    newSecretGeneration: null,
    newSecretProvenAt: null,
    rotationUnconfirmed: false,
    previousSecretExpiresAt: null,
    previousSecretEncrypted: null,
    rotationFailures: 0,
    nextRetryAt: null,
    rotationError: null,
    lastSeenAt: null,
    downloadedVersionId: null,
    downloadedAt: null,
    reportedFirmwareVersion: null,
    reportedElfSha256: null,
    otaState: null,
    lastStateReport: null,
    reportedAt: null,
    firmwarePinVersionId: null,
    rolloutVersionId: null,
    rolloutId: null,
    createdAt: now,
    updatedAt: now,
  };
}
