/**
 * Firmware versions in the database: every accepted image of a model, immutable, one of them the model's stable
 * version. The model row keeps a copy of the stable version's fields (db/schema.ts says why); it changes only here.
 */
import { and, desc, eq, inArray, type SQL, sql } from "drizzle-orm";
import type { Database, Executor } from "../../db/client.ts";
import { deviceModels, devices, firmwareVersions, type ModelRow, rollouts } from "../../db/schema.ts";
import type { Actor, AuditRecorder } from "../audit/log.ts";
import { AppError, conflict, modelNotFound, notFound } from "../errors.ts";
import type { FirmwareVersion } from "../schemas.ts";
import type { FirmwareInfo } from "./image.ts";

export type VersionRow = typeof firmwareVersions.$inferSelect;

/** An accepted image, already stored as `file`, and who sent it (an admin's subject, the audit trail's actor). */
export type Upload = { file: string; info: FirmwareInfo; notes: string | null; uploadedBy: Actor };

export const toFirmwareVersion = (row: VersionRow, model: Pick<ModelRow, "stableVersionId">): FirmwareVersion => ({
  id: row.id,
  version: row.version,
  sha256: row.sha256,
  size: row.size,
  elf_sha256: row.elfSha256,
  secure_version: row.secureVersion,
  project_name: row.projectName,
  chip: row.chip,
  idf_version: row.idfVersion,
  uploaded_at: row.uploadedAt.toISOString(),
  uploaded_by: row.uploadedBy,
  notes: row.notes,
  stable: row.id === model.stableVersionId,
});

export const versionNotFound = (model: ModelRow, id: number) =>
  notFound(`Device model "${model.code}" has no firmware version ${id}.`, "FIRMWARE_VERSION_NOT_FOUND");

export const differentBytes = (code: string, existing: VersionRow, info: FirmwareInfo) =>
  new AppError(
    409,
    "FIRMWARE_VERSION_EXISTS",
    `Device model "${code}" already has a firmware version "${existing.version}" with different bytes; ` +
      "give the new build a version string of its own, or delete that version first.",
    { version: existing.version, version_id: existing.id, sha256: existing.sha256, uploaded_sha256: info.sha256 },
  );

/** What else uses a version: devices pinned to it, devices a rollout gave it, an active rollout of it, devices running it. */
export type VersionUse = { pinnedBy: number; givenTo: number; activeRollout: boolean; reportedRunningBy: number };

/** Why `version` must be kept, or null when it may be deleted. The one place for every such reason. */
export function whyInUse(version: VersionRow, model: Pick<ModelRow, "stableVersionId">, use: VersionUse): string | null {
  if (version.id === model.stableVersionId) return "it is the model's stable version";
  if (use.activeRollout) return "an active rollout is rolling it out";
  if (use.pinnedBy > 0) return `${use.pinnedBy} device(s) are pinned to it`;
  if (use.givenTo > 0) return `it is the target a rollout gave ${use.givenTo} device(s)`;
  if (use.reportedRunningBy > 0) return `${use.reportedRunningBy} device(s) report running it`;
  return null;
}

async function useOf(executor: Executor, version: VersionRow): Promise<VersionUse> {
  const counted = (condition: SQL) => sql<number>`count(*) filter (where ${condition})`.mapWith(Number);
  const [use] = await executor
    .select({
      pinnedBy: counted(sql`${devices.firmwarePinVersionId} = ${version.id}`),
      givenTo: counted(sql`${devices.rolloutVersionId} = ${version.id}`),
      reportedRunningBy: counted(sql`${devices.reportedFirmwareVersion} = ${version.version}`),
    })
    .from(devices)
    .where(eq(devices.deviceModelId, version.deviceModelId));
  const [rollout] = await executor
    .select({ id: rollouts.id })
    .from(rollouts)
    .where(and(eq(rollouts.versionId, version.id), inArray(rollouts.state, ["running", "paused"])));
  return { ...use!, activeRollout: rollout !== undefined };
}

export const versionInUse = (model: ModelRow, version: VersionRow, reason: string) =>
  conflict(`Firmware version "${version.version}" of device model "${model.code}" cannot be deleted: ${reason}.`, "FIRMWARE_VERSION_IN_USE");

/** A new version's row from its image and upload (the database adds id and uploaded_at). */
export const newVersionValues = (deviceModelId: number, file: string, info: FirmwareInfo, upload: Pick<Upload, "notes" | "uploadedBy">) => ({
  deviceModelId,
  version: info.version,
  file,
  sha256: info.sha256,
  size: info.size,
  elfSha256: info.elfSha256,
  secureVersion: info.secureVersion,
  projectName: info.projectName,
  chip: info.chip,
  idfVersion: info.idfVersion,
  notes: upload.notes,
  uploadedBy: upload.uploadedBy,
});

/** The model columns that copy its stable version (the in-memory fake of the firmware store applies them too). */
export const stableCopy = (version: VersionRow) => ({
  stableVersionId: version.id,
  firmwareVersion: version.version,
  firmwareFile: version.file,
  firmwareSha256: version.sha256,
  firmwareSize: version.size,
  firmwareProjectName: version.projectName,
  firmwareIdfVersion: version.idfVersion,
  firmwareChip: version.chip,
  // Last-Modified of the model's download: when it began serving this image, so If-Modified-Since never hides a change.
  firmwareUploadedAt: new Date(),
  updatedAt: new Date(),
});

async function findIn(executor: Executor, model: ModelRow, id: number): Promise<VersionRow> {
  const [row] = await executor
    .select()
    .from(firmwareVersions)
    .where(and(eq(firmwareVersions.id, id), eq(firmwareVersions.deviceModelId, model.id)));
  if (!row) throw versionNotFound(model, id);
  return row;
}

export function createFirmwareVersions(db: Database, audit: AuditRecorder) {
  return {
    /** A version of `model`; 404 for an unknown id or one of another model. */
    find: (model: ModelRow, id: number) => findIn(db, model, id),

    /** The model's versions, newest first. */
    list: (model: ModelRow): Promise<VersionRow[]> =>
      db
        .select()
        .from(firmwareVersions)
        .where(eq(firmwareVersions.deviceModelId, model.id))
        .orderBy(desc(firmwareVersions.uploadedAt), desc(firmwareVersions.id)),

    /**
     * Records an upload as a version of the model (what becomes of it — stable at once or a rollout — is decided by
     * lib/rollouts/). The same bytes again are the same version: it gets the fresh copy as its file (the bytes are
     * equal, so nothing the version says changes; a file damaged on disk is repaired). Returns the version and the
     * file it no longer uses. 409 when another image already has this version string; 404 when the model is gone.
     */
    async recordUpload(modelId: number, upload: Upload) {
      const { file, info } = upload;
      return db.transaction(async (tx) => {
        const [model] = await tx.select({ code: deviceModels.code }).from(deviceModels).where(eq(deviceModels.id, modelId)).for("update");
        if (!model) throw modelNotFound(modelId);
        // Equal bytes mean an equal version string, so at most one version has either.
        const [existing] = await tx
          .select()
          .from(firmwareVersions)
          .where(and(eq(firmwareVersions.deviceModelId, modelId), eq(firmwareVersions.version, info.version)));
        if (existing && existing.sha256 !== info.sha256) throw differentBytes(model.code, existing, info);
        const [version] = existing
          ? await tx.update(firmwareVersions).set({ file }).where(eq(firmwareVersions.id, existing.id)).returning()
          : await tx.insert(firmwareVersions).values(newVersionValues(modelId, file, info, upload)).returning();
        // The model's copy of its stable version names the file too: it follows, or it would name the unused file.
        if (existing) await tx.update(deviceModels).set({ firmwareFile: file }).where(and(eq(deviceModels.id, modelId), eq(deviceModels.stableVersionId, existing.id)));
        await audit.record(tx, {
          actor: upload.uploadedBy,
          kind: "firmware.uploaded",
          modelId,
          details: { version: version!.version, version_id: version!.id, sha256: version!.sha256, size: version!.size, new_version: !existing },
        });
        return { version: version!, unusedFile: existing?.file ?? null };
      });
    },

    /** Deletes a version that nothing uses (409 saying what does); returns its row, whose file the caller removes. */
    async remove(model: ModelRow, id: number, actor: Actor): Promise<VersionRow> {
      return db.transaction(async (tx) => {
        // Locked like an upload, so the version cannot become stable between the check and the delete.
        const [current] = await tx
          .select({ stableVersionId: deviceModels.stableVersionId })
          .from(deviceModels)
          .where(eq(deviceModels.id, model.id))
          .for("update");
        if (!current) throw modelNotFound(model.id);
        const version = await findIn(tx, model, id);
        const reason = whyInUse(version, current, await useOf(tx, version));
        if (reason) throw versionInUse(model, version, reason);
        await tx.delete(firmwareVersions).where(eq(firmwareVersions.id, version.id));
        await audit.record(tx, {
          actor,
          kind: "firmware.version_deleted",
          modelId: model.id,
          details: { version: version.version, version_id: version.id, sha256: version.sha256 },
        });
        return version;
      });
    },

    /** Every stored file a version records (the orphan sweep keeps these). */
    async files(): Promise<string[]> {
      const rows = await db.select({ file: firmwareVersions.file }).from(firmwareVersions);
      return rows.map((row) => row.file);
    },
  };
}

export type FirmwareVersions = ReturnType<typeof createFirmwareVersions>;
