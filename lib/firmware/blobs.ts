/**
 * Where firmware images are kept, reduced to the few operations the firmware store needs (./store.ts keeps versions,
 * the memory cache and downloads the same whatever the storage): a directory (./fs-blobs.ts, FIRMWARE_STORE=fs) or an
 * S3 bucket (./s3-blobs.ts, FIRMWARE_STORE=s3).
 *
 * A blob is named by a key: `<model code>/<name>` for an image, a top-level `.upload-…` key for an upload in
 * progress. A key's bytes never change once it is complete.
 */
import type { RangeReader } from "../stored-file.ts";

/** The blob asked for does not exist (removed by a commit meanwhile, or lost behind the server's back). */
export class BlobMissing extends Error {}

export type BlobEntry = { key: string; modifiedMs: number };

export type BlobStorage = {
  /** Where the blobs are, for logs. */
  readonly where: string;
  /** Prepares the storage (creates the directory); the bucket must exist. */
  init(): Promise<void>;
  /** Streams `chunks` into the blob `temp`, complete and durable when this resolves; a failure leaves no blob behind. */
  writeTemp(temp: string, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /** Makes the complete blob `temp` the blob `key`; `temp` is gone afterwards. */
  promote(temp: string, key: string): Promise<void>;
  /** The whole blob (for the memory cache); BlobMissing when there is none. */
  readAll(key: string): Promise<Buffer>;
  /** The blob's size and a reader of its ranges; BlobMissing when there is none. */
  open(key: string): Promise<{ size: number; reader: RangeReader }>;
  /** Removes the blob; nothing happens when it is already gone. */
  remove(key: string): Promise<void>;
  /** Removes every blob whose key starts with `prefix`. */
  removeUnder(prefix: string): Promise<void>;
  /** Every blob, complete or not, with the time it was last written. */
  list(): AsyncIterable<BlobEntry>;
  /**
   * After a sweep: lets go of what holds no blob: the empty folders of models that are gone (a directory), uploads
   * begun before `staleBefore` (ms since the epoch) that never completed (a bucket's multipart uploads).
   */
  tidy(modelCodes: Set<string>, staleBefore: number): Promise<void>;
};
