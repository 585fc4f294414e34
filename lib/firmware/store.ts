/**
 * Firmware images in blob storage (a directory or an S3 bucket, ./blobs.ts), kept in step with the firmware versions
 * and model rows (CONTRACT §1, §6).
 *
 * An upload streams through the image inspector into a temporary blob, complete and durable before it is promoted to
 * a key of its own (`<model code>/<sha256>-<random>.bin`); then one transaction records it as a version
 * (./versions.ts) and points the model at it. A blob is removed only after the commit that stops using it (its
 * version deleted, the same bytes stored anew, its model deleted) — downloads already sending it keep their copy in
 * memory or their reader, new downloads read the new blob — so a device never gets a mix of two images,
 * and a failed upload leaves the versions and the stable firmware as they were. Leftovers of a crash (temporary
 * blobs, a promoted blob whose transaction never committed) are swept at start. Downloads share one copy of each
 * image in memory while it fits FIRMWARE_CACHE_BYTES (./cache.ts says why).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { eq } from "drizzle-orm";
import { LRUCache } from "lru-cache";
import type { Database } from "../../db/client.ts";
import { isProcessRunning } from "../../db/process-alive.ts";
import { deviceModels, type ModelRow } from "../../db/schema.ts";
import type { Actor, AuditRecorder } from "../audit/log.ts";
import { AppError, badRequest, modelNotFound, notFound } from "../errors.ts";
import type { FileSource, StoredFile } from "../stored-file.ts";
import type { Logger } from "../logger.ts";
import { errorMessage } from "../logger.ts";
import { BlobMissing, type BlobStorage } from "./blobs.ts";
import { createImageCache } from "./cache.ts";
import { createImageInspector, FirmwareRejected, type FirmwareInfo } from "./image.ts";
import { type TargetInputs, targetVersionId } from "./targets.ts";

/** Refuses an upload (by throwing) once its image is known, before it is recorded: nothing changes then. */
export type UploadCheck = (info: FirmwareInfo) => Promise<void>;
import { createFirmwareVersions, type Upload, type VersionRow } from "./versions.ts";

/** A blob untouched for this long cannot belong to an upload still in progress on another replica. */
const STALE_MS = 10 * 60 * 1000;
const TEMP_PREFIX = ".upload-";
/** A stored file that is not the one its row records (changed on disk behind the server's back). */
class FileDamaged extends Error {}

/** What is known of a stored image before it is opened: its file, its recorded size and its validators. */
type StoredImage = { file: string; size: number | null; etag: string; lastModified: Date };

const HOST = hostname().replace(/[^\w.]/g, "_");
/** `.upload-<host>-<pid>-<random>.tmp`: the host and pid tell at start which leftovers are surely dead. */
const tempName = () => `${TEMP_PREFIX}${HOST}-${process.pid}-${randomBytes(6).toString("hex")}.tmp`;

/** A temporary file of a process on this host that is no longer running (or is us, starting). */
function leftByDeadProcess(name: string): boolean {
  const match = name.match(/^\.upload-(.+)-(\d+)-[0-9a-f]+\.tmp$/);
  if (!match || match[1] !== HOST) return false;
  const pid = Number(match[2]);
  return pid === process.pid || !isProcessRunning(pid);
}

export function createFirmwareStore(deps: { db: Database; blobs: BlobStorage; cacheBytes: number; logger: Logger; audit: AuditRecorder }) {
  const { db, blobs, logger } = deps;
  const cache = createImageCache(deps.cacheBytes);
  /** Rows of versions devices target besides the stable one (pins, rollouts), by id: see targetSource. */
  const targetVersions = new LRUCache<number, VersionRow>({ max: 1000 });
  const versions = createFirmwareVersions(db, deps.audit);

  const removeQuietly = (key: string, what: string) =>
    blobs.remove(key).catch((error) => logger.error(`Could not remove ${what}`, { key, storage: blobs.where, error: errorMessage(error) }));

  /** The assets volume refused to store an image: the uploader learns why (507), the operator who must act is told. */
  function storageRefused(error: unknown): unknown {
    const code = (error as NodeJS.ErrnoException)?.code;
    const full = code === "ENOSPC" || code === "EDQUOT";
    if (!full && code !== "EROFS") return error;
    logger.error(full ? "Firmware storage is full" : "Firmware storage is read-only", { storage: blobs.where, error: errorMessage(error) });
    return full
      ? new AppError(507, "INSUFFICIENT_STORAGE", "There is not enough space left in the firmware storage for this image; the current firmware is unchanged.")
      : new AppError(507, "STORAGE_READ_ONLY", "The firmware storage is read-only, so no image can be stored; the current firmware is unchanged.");
  }

  /**
   * The bytes of a stored file: shared from memory when they fit the cache, else an open handle of their own.
   * A file whose size is not the recorded one was changed behind our back; it is refused, not served under the
   * recorded ETag.
   */
  async function contentOf(file: string, recordedSize: number | null): Promise<Pick<StoredFile, "content" | "size">> {
    const checkSize = (size: number) => {
      if (recordedSize !== null && size !== recordedSize) throw new FileDamaged(`it has ${size} bytes; its row records ${recordedSize}`);
    };
    const cached = cache.get(file, recordedSize ?? Number.POSITIVE_INFINITY, async () => {
      const bytes = await blobs.readAll(file);
      checkSize(bytes.length);
      return bytes;
    });
    if (cached) {
      const bytes = await cached;
      return { content: bytes, size: bytes.length };
    }
    const { size, reader } = await blobs.open(file);
    try {
      checkSize(size);
      return { content: reader, size };
    } catch (error) {
      await reader.close();
      throw error;
    }
  }

  /** The stable image a model row points at; 404 when it has none. */
  function stableImage(row: ModelRow): StoredImage {
    const { firmwareFile: file, firmwareSha256: sha256 } = row;
    if (!file || !sha256) throw notFound(`Device model "${row.code}" has no firmware yet.`, "FIRMWARE_NOT_FOUND");
    return { file, size: row.firmwareSize, etag: `"${sha256}"`, lastModified: row.firmwareUploadedAt ?? row.updatedAt };
  }

  const versionImage = (version: VersionRow): StoredImage => ({
    file: version.file,
    size: version.size,
    etag: `"${version.sha256}"`,
    lastModified: version.uploadedAt,
  });

  /** Opens `image`, the stored image of `what`; `reread` gives it anew when a commit unlinked its file meanwhile. */
  async function openImage(image: StoredImage, what: string, reread: () => Promise<StoredImage>): Promise<StoredFile> {
    for (let attempt = 1; ; attempt++) {
      const { file, size, ...validators } = image;
      try {
        return { ...(await contentOf(file, size)), ...validators };
      } catch (error) {
        const missing = error instanceof BlobMissing;
        if (error instanceof FileDamaged || (missing && attempt >= 3)) {
          logger.error("A stored firmware file is missing or damaged", { firmware: what, file, error: errorMessage(error) });
          throw new AppError(500, "FIRMWARE_FILE_DAMAGED", `The stored ${what} is missing or damaged; upload it again.`);
        }
        // A commit removed this blob between the read and the open (a newer upload, the same bytes stored anew).
        if (!missing) throw error;
        image = await reread();
      }
    }
  }

  async function readModel(id: number): Promise<ModelRow> {
    const [row] = await db.select().from(deviceModels).where(eq(deviceModels.id, id));
    if (!row) throw modelNotFound(id);
    return row;
  }

  /** Streams `chunks` into a temporary blob while validating them; returns its key and what the image says. */
  async function receive(chunks: AsyncIterable<Uint8Array>): Promise<{ temp: string; info: FirmwareInfo }> {
    const temp = tempName();
    const inspector = createImageInspector();
    // The storage may wrap what the body threw (413, a refused image): what the body threw is what the caller learns.
    let bodyError: { error: unknown } | null = null;
    async function* inspected() {
      try {
        for await (const chunk of chunks) {
          inspector.update(chunk);
          yield chunk;
        }
      } catch (error) {
        bodyError = { error };
        throw error;
      }
    }
    try {
      await blobs.writeTemp(temp, inspected()).catch((error) => Promise.reject(bodyError ? bodyError.error : error));
      return { temp, info: inspector.finish() };
    } catch (error) {
      await removeQuietly(temp, "a temporary firmware file");
      if (error instanceof FirmwareRejected) throw badRequest(error.message, "INVALID_FIRMWARE");
      throw error;
    }
  }

  /** Removes temporary blobs of uploads that can no longer finish. */
  async function sweepTemporary(): Promise<void> {
    const now = Date.now();
    for await (const { key, modifiedMs } of blobs.list()) {
      if (!key.startsWith(TEMP_PREFIX) || key.includes("/")) continue;
      if (leftByDeadProcess(key) || now - modifiedMs > STALE_MS) await removeQuietly(key, "a stale temporary firmware file");
    }
  }

  /** Removes images no version records (a crash between promotion and commit), once surely not in flight. */
  async function sweepOrphans(): Promise<void> {
    const rows = await db.select({ code: deviceModels.code }).from(deviceModels);
    const referenced = new Set(await versions.files());
    const now = Date.now();
    for await (const { key, modifiedMs } of blobs.list()) {
      if (!key.includes("/") || referenced.has(key)) continue;
      if (now - modifiedMs > STALE_MS) await removeQuietly(key, "an orphaned firmware file");
    }
    await blobs.tidy(new Set(rows.map((row) => row.code)), now - STALE_MS);
  }

  return {
    /** Prepares the storage (creates the assets directory, checks the bucket) and sweeps what a crashed upload left behind. */
    async init(): Promise<void> {
      await blobs.init();
      await sweepTemporary();
      // Before the first migration there is no table to compare with; the next start sweeps then.
      await sweepOrphans().catch((error) => logger.warn("Firmware orphan sweep skipped", { error: errorMessage(error) }));
    },

    /**
     * Validates and stores an uploaded image for `model` as a version of it (the same bytes again: the same version);
     * `check` may refuse it first. What becomes of the version is lib/rollouts/'s to decide.
     * Throws 400 INVALID_FIRMWARE (with the reason), 413, 507 when the storage refuses the file, 409 when another
     * image has this version string, or 404 if the model vanished meanwhile.
     */
    async save(model: ModelRow, chunks: AsyncIterable<Uint8Array>, by: Pick<Upload, "notes" | "uploadedBy">, check: UploadCheck = async () => {}): Promise<VersionRow> {
      const { temp, info } = await receive(chunks).catch((error) => Promise.reject(storageRefused(error)));
      try {
        await check(info);
      } catch (error) {
        await removeQuietly(temp, "a temporary firmware file");
        throw error;
      }
      const file = `${model.code}/${info.sha256}-${randomBytes(4).toString("hex")}.bin`;
      let recorded: Awaited<ReturnType<typeof versions.recordUpload>>;
      try {
        await blobs.promote(temp, file);
      } catch (error) {
        await removeQuietly(temp, "a temporary firmware file");
        throw storageRefused(error);
      }
      try {
        recorded = await versions.recordUpload(model.id, { file, info, ...by });
      } catch (error) {
        await removeQuietly(file, "a firmware file whose upload failed");
        throw error;
      }
      const { version, unusedFile } = recorded;
      if (unusedFile) {
        targetVersions.delete(version.id);
        cache.forget(unusedFile);
        await removeQuietly(unusedFile, "a firmware file stored anew");
      }
      logger.info("Firmware stored", { model: model.code, version: info.version, version_id: version.id, size: info.size, sha256: info.sha256, signature: info.signature });
      return version;
    },

    /**
     * The current firmware of a model (a row the caller already read) for fileResponse: its validators at once (a
     * 304 needs no file), its bytes on open() — the shared copy in memory, or else a handle opened before the
     * response is built, so that a concurrent upload can unlink the file without cutting this download short.
     */
    source(model: ModelRow): FileSource {
      const image = stableImage(model);
      const reread = async () => stableImage(await readModel(model.id));
      return { ...image, open: () => openImage(image, `firmware of device model "${model.code}"`, reread) };
    },

    /**
     * The image of a device's target (lib/firmware/targets.ts), as source(): the model's own download when that is its
     * stable version (no query), else its version's image. 404 FIRMWARE_NOT_FOUND when it has none.
     */
    async targetSource(target: TargetInputs & { model: ModelRow }): Promise<FileSource> {
      const versionId = targetVersionId(target);
      if (versionId === null || versionId === target.model.stableVersionId) return this.source(target.model);
      // Every boot of a device in a rollout or pinned asks: its version's row is kept (what a version says never
      // changes; a file replaced by a re-upload is read anew by versionSource's reread).
      let version = targetVersions.get(versionId);
      if (!version) targetVersions.set(versionId, (version = await versions.find(target.model, versionId)));
      return this.versionSource(target.model, version);
    },

    /** The model's versions, newest first. */
    listVersions: (model: ModelRow) => versions.list(model),

    /** A version of `model`; 404 FIRMWARE_VERSION_NOT_FOUND for an unknown id or one of another model. */
    version: (model: ModelRow, id: number) => versions.find(model, id),

    /** The image of a version, for fileResponse (as source()). */
    versionSource(model: ModelRow, version: VersionRow): FileSource {
      const image = versionImage(version);
      const reread = async () => versionImage(await versions.find(model, version.id));
      return { ...image, open: () => openImage(image, `image of firmware version "${version.version}" of device model "${model.code}"`, reread) };
    },

    /** Deletes a version nothing uses (409 FIRMWARE_VERSION_IN_USE says what does), then its file. */
    async deleteVersion(model: ModelRow, id: number, actor: Actor): Promise<void> {
      const { file } = await versions.remove(model, id, actor);
      targetVersions.delete(id);
      cache.forget(file);
      await removeQuietly(file, "the file of a deleted firmware version");
    },

    /** A model stopped serving `file` as its stable image (devices targeting its version read it anew): not kept in memory for it. */
    released: (file: string | null) => void (file && cache.forget(file)),

    /** Bytes of firmware held in memory. */
    cachedBytes: () => cache.usedBytes(),

    /** The model row is gone, and its versions with it: its firmware directory goes too. */
    async removeModelFiles(model: ModelRow): Promise<void> {
      cache.forgetUnder(`${model.code}/`);
      await blobs
        .removeUnder(`${model.code}/`)
        .catch((error) => logger.error("Could not remove the firmware of a deleted model", { model: model.code, storage: blobs.where, error: errorMessage(error) }));
    },
  };
}

export type FirmwareStore = ReturnType<typeof createFirmwareStore>;
