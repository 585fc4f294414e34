/**
 * Firmware blobs as files under a directory (FIRMWARE_STORE=fs, ASSETS_DIR): a temporary file is written, fsynced and
 * renamed to its key's path. A file's open handle keeps reading it after a commit unlinks it.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BlobMissing, type BlobEntry, type BlobStorage } from "./blobs.ts";

const ENOENT = (error: unknown) => (error as NodeJS.ErrnoException)?.code === "ENOENT";
const missingAsBlobMissing = (key: string) => (error: unknown) => {
  throw ENOENT(error) ? new BlobMissing(`${key}: ${(error as Error).message}`) : error;
};

async function writeAll(handle: FileHandle, chunk: Uint8Array) {
  let written = 0;
  while (written < chunk.byteLength) written += (await handle.write(chunk, written, chunk.byteLength - written)).bytesWritten;
}

export function createFsBlobs(dir: string): BlobStorage {
  const path = (key: string) => join(dir, key);
  const modified = async (key: string, now: number) => (await stat(path(key)).catch(() => ({ mtimeMs: now }))).mtimeMs;

  return {
    where: dir,

    init: () => mkdir(dir, { recursive: true }).then(() => {}),

    async writeTemp(temp, chunks) {
      await mkdir(dir, { recursive: true });
      const handle = await open(path(temp), "wx");
      try {
        for await (const chunk of chunks) await writeAll(handle, chunk);
        await handle.sync();
      } catch (error) {
        await handle.close().catch(() => {});
        await rm(path(temp), { force: true }).catch(() => {});
        throw error;
      }
      await handle.close();
    },

    async promote(temp, key) {
      await mkdir(dirname(path(key)), { recursive: true });
      await rename(path(temp), path(key));
    },

    readAll: (key) => readFile(path(key)).catch(missingAsBlobMissing(key)),

    async open(key) {
      const handle = await open(path(key), "r").catch(missingAsBlobMissing(key));
      try {
        return { size: (await handle.stat()).size, reader: handle };
      } catch (error) {
        await handle.close();
        throw error;
      }
    },

    remove: (key) => rm(path(key), { force: true }),

    removeUnder: (prefix) => rm(path(prefix), { force: true, recursive: true }),

    async *list(): AsyncIterable<BlobEntry> {
      const now = Date.now();
      for (const entry of await readdir(dir, { withFileTypes: true }).catch((error) => (ENOENT(error) ? [] : Promise.reject(error)))) {
        if (entry.isFile()) yield { key: entry.name, modifiedMs: await modified(entry.name, now) };
        if (!entry.isDirectory()) continue;
        for (const name of await readdir(path(entry.name)).catch(() => [])) {
          const key = `${entry.name}/${name}`;
          yield { key, modifiedMs: await modified(key, now) };
        }
      }
    },

    async tidy(modelCodes) {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (entry.isDirectory() && !modelCodes.has(entry.name) && (await readdir(path(entry.name))).length === 0) await rm(path(entry.name), { recursive: true, force: true });
      }
    },
  };
}
