import type { Readable } from "node:stream";

export type Validators = {
  /** Strong entity tag, quoted. */
  etag: string;
  lastModified: Date;
};

/**
 * Bytes read on demand, a range at a time: an open file handle (a node:fs FileHandle is one), or an object in an S3
 * bucket. The response that takes it over closes it.
 */
export type RangeReader = {
  createReadStream(options: { start: number; end: number; highWaterMark?: number }): Readable;
  close(): Promise<void>;
};

/** A stored file to send: its bytes in memory (shared, never changed), or a reader the response takes over. */
export type StoredFile = Validators & { content: Buffer | RangeReader; size: number };

/** What is known of a file before it is read (enough for a 304), and how to open it. */
export type FileSource = Validators & { open(): Promise<StoredFile> };
