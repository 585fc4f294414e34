import type { FileHandle } from "node:fs/promises";

export type Validators = {
  /** Strong entity tag, quoted. */
  etag: string;
  lastModified: Date;
};

/** A stored file to send: its bytes in memory (shared, never changed), or an open handle the response takes over. */
export type StoredFile = Validators & { content: Buffer | FileHandle; size: number };

/** What is known of a file before it is read (enough for a 304), and how to open it. */
export type FileSource = Validators & { open(): Promise<StoredFile> };
