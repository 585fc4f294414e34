import type { FileHandle } from "node:fs/promises";
import { AppError } from "./errors.ts";
import { ifRangeHolds, noneMatchHits, notModifiedSince, parseRange } from "./range.ts";

/** An opened file to send; the response takes ownership of the handle and closes it. */
export type OpenFile = {
  handle: FileHandle;
  size: number;
  /** Strong entity tag, quoted. */
  etag: string;
  lastModified: Date;
};

const CHUNK_BYTES = 256 * 1024;

/**
 * The bytes [start, end] of the file as a web stream that reads only when the consumer pulls (the HTTP
 * adapter pulls when the socket has drained): memory per download stays at about one chunk. The handle is
 * closed at the end, on cancel and when `signal` aborts (client gone). Reading by handle keeps serving a file
 * that was unlinked meanwhile (a newer firmware replaced it), so a download is never a mix of two files.
 */
export function fileStream(handle: FileHandle, start: number, end: number, signal?: AbortSignal): ReadableStream<Uint8Array> {
  let position = start;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener("abort", close);
    handle.close().catch(() => {});
  };
  signal?.addEventListener("abort", close, { once: true });
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          if (position > end) {
            close();
            return controller.close();
          }
          const length = Math.min(CHUNK_BYTES, end + 1 - position);
          const buffer = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buffer, 0, length, position);
          if (bytesRead === 0) throw new Error("The file ended before the expected length.");
          position += bytesRead;
          controller.enqueue(buffer.subarray(0, bytesRead));
          if (position > end) {
            close();
            controller.close();
          }
        } catch (error) {
          close();
          controller.error(error);
        }
      },
      cancel: close,
    },
    { highWaterMark: 0 },
  );
}

const rangeNotSatisfiable = (size: number) =>
  new AppError(416, "RANGE_NOT_SATISFIABLE", `The requested range is outside the file (it has ${size} bytes).`, { size }, {
    "content-range": `bytes */${size}`,
  });

/**
 * A GET response for a stored file: 200, 206 for one satisfiable `Range` (honouring `If-Range`), 304 for a
 * matching `If-None-Match` (or `If-Modified-Since` without it), 416 for an unsatisfiable range.
 */
export function fileResponse(request: Request, file: OpenFile, headers: Record<string, string> = {}): Response {
  const validators = {
    etag: file.etag,
    "last-modified": file.lastModified.toUTCString(),
    "accept-ranges": "bytes",
    ...headers,
  };
  const ifNoneMatch = request.headers.get("if-none-match");
  const unchanged =
    ifNoneMatch !== null ? noneMatchHits(ifNoneMatch, file.etag) : notModifiedSince(request.headers.get("if-modified-since"), file.lastModified);
  if (unchanged) {
    file.handle.close().catch(() => {});
    return new Response(null, { status: 304, headers: validators });
  }

  const range = ifRangeHolds(request.headers.get("if-range"), file.etag, file.lastModified)
    ? parseRange(request.headers.get("range"), file.size)
    : null;
  if (range === "unsatisfiable") {
    file.handle.close().catch(() => {});
    throw rangeNotSatisfiable(file.size);
  }
  const { start, end } = range ?? { start: 0, end: file.size - 1 };
  return new Response(fileStream(file.handle, start, end, request.signal), {
    status: range ? 206 : 200,
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(end - start + 1),
      ...(range && { "content-range": `bytes ${start}-${end}/${file.size}` }),
      ...validators,
    },
  });
}
