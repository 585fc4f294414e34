import { Readable } from "node:stream";
import { Response as FastResponse } from "@whatwg-node/fetch";
import { AppError } from "../errors.ts";
import type { FileSource, Validators } from "../stored-file.ts";
import { withDirectBody } from "./direct-body.ts";
import { ifRangeHolds, noneMatchHits, notModifiedSince, parseRange } from "./range.ts";

const CHUNK_BYTES = 256 * 1024;

const rangeNotSatisfiable = (size: number) =>
  new AppError(416, "RANGE_NOT_SATISFIABLE", `The requested range is outside the file (it has ${size} bytes).`, { size }, {
    "content-range": `bytes */${size}`,
  });

const validatorHeaders = (file: Validators, headers: Record<string, string>) => ({
  etag: file.etag,
  "last-modified": file.lastModified.toUTCString(),
  "accept-ranges": "bytes",
  ...headers,
});

/** `bytes` in chunks, read only as fast as the client takes them, so that its end means the client took them all. */
function* chunksOf(bytes: Buffer) {
  for (let start = 0; start < bytes.length; start += CHUNK_BYTES) yield bytes.subarray(start, start + CHUNK_BYTES);
}

/** Who wants to know that a full (200) body went out, and how the server tells (RouteContext.onResponseSent). */
export type FullBodyNotice = {
  /** Called with the file's validators once the last byte of a 200 was handed to the connection. */
  sent: (file: Validators) => void;
  /** The connection's "response sent" notice; undefined where the server has none (then see fileResponse). */
  onResponseSent: ((listener: () => void) => void) | undefined;
};

/**
 * A GET response for a stored file: 304 for a matching `If-None-Match` (or `If-Modified-Since` without it),
 * decided before the file is opened; else 200, 206 for one satisfiable `Range` (honouring `If-Range`), 416 for an
 * unsatisfiable range. `fullBody.sent` is called with the file's validators once the last byte of a 200 was handed
 * to the connection (a client that hangs up earlier, e.g. after reading the image header, never triggers it).
 *
 * The server tells that through `onResponseSent` (node:http's 'finish'), so the body stays what it always is, one
 * Buffer written at once: the fast path of the download throughput (streaming it in chunks cost ~50 % more CPU per
 * download, docs/performance.md). Only without that notice (a test calling the app directly) is a Buffer streamed in
 * chunks, whose end then means the client took them all.
 */
export async function fileResponse(
  request: Request,
  source: FileSource,
  headers: Record<string, string> = {},
  fullBody?: FullBodyNotice,
): Promise<Response> {
  const ifNoneMatch = request.headers.get("if-none-match");
  const unchanged =
    ifNoneMatch !== null ? noneMatchHits(ifNoneMatch, source.etag) : notModifiedSince(request.headers.get("if-modified-since"), source.lastModified);
  if (unchanged) return new Response(null, { status: 304, headers: validatorHeaders(source, headers) });

  // The file opened may be newer than `source` (an upload replaced it meanwhile): its own validators apply.
  const file = await source.open();
  const release = () => {
    if (!Buffer.isBuffer(file.content)) file.content.close().catch(() => {});
  };

  const range = ifRangeHolds(request.headers.get("if-range"), file.etag, file.lastModified)
    ? parseRange(request.headers.get("range"), file.size)
    : null;
  if (range === "unsatisfiable") {
    release();
    throw rangeNotSatisfiable(file.size);
  }
  const { start, end } = range ?? { start: 0, end: file.size - 1 };
  // Either kind of body goes straight into the socket (./direct-body.ts): a Buffer (a view
  // of the shared copy, not a copy) is written as it is; a Node stream is piped, read only as fast as the client
  // takes it, destroyed when the client goes, which closes the handle, and cut off when the storage fails mid-way
  // (lib/http/node-adapter.ts: the client sees its download break off and retries). Reading by handle keeps serving a file
  // that was unlinked meanwhile (a newer firmware replaced it), so a download is never a mix of two files.
  let body: Buffer | Readable = Buffer.isBuffer(file.content)
    ? file.content.subarray(start, end + 1)
    : file.content.createReadStream({ start, end, highWaterMark: CHUNK_BYTES });
  if (fullBody && !range) {
    const sent = () => fullBody.sent(file);
    if (fullBody.onResponseSent) fullBody.onResponseSent(sent);
    else {
      // A Buffer would be handed over whole at once, so its end would say nothing about the client: stream it in chunks.
      if (Buffer.isBuffer(body)) body = Readable.from(chunksOf(body), { objectMode: false });
      body.once("end", sent);
    }
  }
  const response = new FastResponse(body as unknown as BodyInit, {
    status: range ? 206 : 200,
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(end - start + 1),
      ...(range && { "content-range": `bytes ${start}-${end}/${file.size}` }),
      ...validatorHeaders(file, headers),
    },
  }) as unknown as Response;
  return withDirectBody(response, body);
}
