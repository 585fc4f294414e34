/**
 * FirmwareStore in memory: an upload is checked by the real image inspector and kept as a firmware version (bytes in a
 * map, the row in the shared world); what becomes of it is the rollouts fake's to decide. What it records
 * and refuses (idempotent re-upload, 409 FIRMWARE_VERSION_EXISTS, 404 FIRMWARE_VERSION_NOT_FOUND, 409
 * FIRMWARE_VERSION_IN_USE) uses lib/firmware/versions.ts's own row mapper and errors, and is held to the real store
 * by the firmware store contract (test/support/firmware-store-contract.ts).
 */
import { randomBytes } from "node:crypto";
import { FirmwareRejected, createImageInspector, type FirmwareInfo } from "../../../lib/firmware/image.ts";
import type { FirmwareStore } from "../../../lib/firmware/store.ts";
import { targetVersionId } from "../../../lib/firmware/targets.ts";
import { differentBytes, newVersionValues, type VersionRow, versionInUse, versionNotFound, whyInUse } from "../../../lib/firmware/versions.ts";
import { AppError, badRequest, modelNotFound, notFound } from "../../../lib/errors.ts";
import type { ModelRow } from "../../../db/schema.ts";
import type { FileSource } from "../../../lib/stored-file.ts";
import type { FakeWorld } from "./world.ts";

type Image = { file: string; etag: string; lastModified: Date };

export function fakeFirmwareStore(world: FakeWorld): FirmwareStore {
  const files = new Map<string, Buffer>();

  function stableImage(row: ModelRow): Image {
    const { firmwareFile: file, firmwareSha256: sha256 } = row;
    if (!file || !sha256) throw notFound(`Device model "${row.code}" has no firmware yet.`, "FIRMWARE_NOT_FOUND");
    return { file, etag: `"${sha256}"`, lastModified: row.firmwareUploadedAt ?? row.updatedAt };
  }

  const versionImage = (version: VersionRow): Image => ({ file: version.file, etag: `"${version.sha256}"`, lastModified: version.uploadedAt });

  function findVersion(model: ModelRow, id: number): VersionRow {
    const version = world.versions.get(id);
    if (!version || version.deviceModelId !== model.id) throw versionNotFound(model, id);
    return { ...version };
  }

  /** As the real store: the image read when the source was made, read anew if its file is gone meanwhile. */
  function sourceOf(image: Image, what: string, reread: () => Image): FileSource {
    const { file, ...validators } = image;
    return {
      ...validators,
      async open() {
        for (const current of [image, reread()]) {
          const content = files.get(current.file);
          if (content) return { etag: current.etag, lastModified: current.lastModified, content, size: content.length };
        }
        throw new AppError(500, "FIRMWARE_FILE_DAMAGED", `The stored ${what} is missing or damaged; upload it again.`);
      },
    };
  }

  async function receive(chunks: AsyncIterable<Uint8Array>): Promise<{ bytes: Buffer; info: FirmwareInfo }> {
    const inspector = createImageInspector();
    const parts: Uint8Array[] = [];
    try {
      for await (const chunk of chunks) {
        inspector.update(chunk);
        parts.push(chunk);
      }
      return { info: inspector.finish(), bytes: Buffer.concat(parts) };
    } catch (error) {
      if (error instanceof FirmwareRejected) throw badRequest(error.message, "INVALID_FIRMWARE");
      throw error;
    }
  }

  /** lib/firmware/versions.ts recordUpload, as one step (no await inside, so nothing interleaves). */
  function recordUpload(modelId: number, file: string, info: FirmwareInfo, by: { notes: string | null; uploadedBy: string }) {
    const row = world.models.get(modelId);
    if (!row) throw modelNotFound(modelId);
    const existing = [...world.versions.values()].find((version) => version.deviceModelId === modelId && version.version === info.version);
    if (existing && existing.sha256 !== info.sha256) throw differentBytes(row.code, existing, info);
    const unusedFile = existing?.file ?? null;
    if (existing && row.stableVersionId === existing.id) row.firmwareFile = file;
    const version: VersionRow = existing
      ? Object.assign(existing, { file })
      : { id: world.nextId(), uploadedAt: new Date(), ...newVersionValues(modelId, file, info, by) };
    world.versions.set(version.id, version);
    return { version: { ...version }, unusedFile };
  }

  return {
    async init() {},
    async save(model, chunks, by, check = async () => {}) {
      const { bytes, info } = await receive(chunks);
      await check(info);
      const file = `${model.code}/${info.sha256}-${randomBytes(4).toString("hex")}.bin`;
      files.set(file, bytes);
      let recorded: ReturnType<typeof recordUpload>;
      try {
        recorded = recordUpload(model.id, file, info, by);
      } catch (error) {
        files.delete(file);
        throw error;
      }
      if (recorded.unusedFile) files.delete(recorded.unusedFile);
      return recorded.version;
    },
    source(model) {
      return sourceOf(stableImage(model), `firmware of device model "${model.code}"`, () => {
        const row = world.models.get(model.id);
        if (!row) throw modelNotFound(model.id);
        return stableImage(row);
      });
    },
    async targetSource(target) {
      const versionId = targetVersionId(target);
      if (versionId === null || versionId === target.model.stableVersionId) return this.source(target.model);
      return this.versionSource(target.model, findVersion(target.model, versionId));
    },
    async listVersions(model) {
      return [...world.versions.values()]
        .filter((version) => version.deviceModelId === model.id)
        .sort((a, b) => b.uploadedAt.getTime() - a.uploadedAt.getTime() || b.id - a.id)
        .map((version) => ({ ...version }));
    },
    async version(model, id) {
      return findVersion(model, id);
    },
    versionSource(model, version) {
      const what = `image of firmware version "${version.version}" of device model "${model.code}"`;
      return sourceOf(versionImage(version), what, () => versionImage(findVersion(model, version.id)));
    },
    async deleteVersion(model, id) {
      const current = world.models.get(model.id);
      if (!current) throw modelNotFound(model.id);
      const version = findVersion(model, id);
      const modelDevices = [...world.devices.values()].filter((device) => device.deviceModelId === model.id);
      const use = {
        pinnedBy: modelDevices.filter((device) => device.firmwarePinVersionId === version.id).length,
        givenTo: modelDevices.filter((device) => device.rolloutVersionId === version.id).length,
        // The fake runs no staged rollout with devices (test/support/fakes/rollouts.ts): none is ever active.
        activeRollout: false,
        reportedRunningBy: modelDevices.filter((device) => device.reportedFirmwareVersion === version.version).length,
      };
      const reason = whyInUse(version, current, use);
      if (reason) throw versionInUse(model, version, reason);
      world.versions.delete(version.id);
      files.delete(version.file);
    },
    released() {},
    cachedBytes: () => 0,
    async removeModelFiles(model) {
      for (const file of [...files.keys()]) if (file.startsWith(`${model.code}/`)) files.delete(file);
    },
  };
}
