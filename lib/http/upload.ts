import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import busboy from "busboy";
import { limitedChunks, mediaType, payloadTooLarge, unsupportedMediaType } from "./body.ts";
import { AppError, badRequest, validationFailed } from "../errors.ts";

/** The multipart form field that carries the file. */
const FILE_FIELD = "file";
const UPLOAD_CONTENT_TYPES = ["application/octet-stream", "multipart/form-data"];

/** Room for the multipart boundaries, part headers and small extra fields around the file. */
const MULTIPART_OVERHEAD = 64 * 1024;

/** What `curl --data-binary` sends without `-H "Content-Type: …"`; the body is still the raw file. */
const CURL_DEFAULT_TYPE = "application/x-www-form-urlencoded";

/**
 * The bytes of an uploaded file, streamed (never buffered whole) and limited to `limit` bytes (413 beyond):
 * either the raw body (`application/octet-stream`) or the field `file` of a `multipart/form-data` body. With
 * `untypedRaw` (the caller sent a bearer token on purpose, not just a browser's cookie) a body without a content type
 * or with curl's default `application/x-www-form-urlencoded` is taken as the raw file too: a cross-site form can send
 * that type with the browser's cookie, so it is never accepted on a session alone. Anything else is 415, checked
 * at once, before any byte is read.
 */
export function uploadedFile(request: Request, limit: number, { untypedRaw }: { untypedRaw: boolean }): AsyncIterable<Uint8Array> {
  const type = mediaType(request);
  if (type === "application/octet-stream") return limitedChunks(request, limit);
  if (type === "multipart/form-data") return multipartFile(request, limit);
  if (untypedRaw && (type === "" || type === CURL_DEFAULT_TYPE)) return limitedChunks(request, limit);
  throw unsupportedMediaType(UPLOAD_CONTENT_TYPES);
}

const malformed = (reason: string) =>
  badRequest(`The multipart body is malformed: ${reason.replace(/\.$/, "")}.`, "MALFORMED_MULTIPART");

async function* multipartFile(request: Request, limit: number): AsyncGenerator<Uint8Array> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { "content-type": request.headers.get("content-type") ?? "" },
      // One byte more than allowed, so that the count below sees the excess and answers 413.
      limits: { files: 1, fileSize: limit + 1, fields: 20, fieldSize: 16 * 1024, parts: 40 },
    });
  } catch (error) {
    throw malformed((error as Error).message);
  }
  const file = new Promise<Readable | null>((resolve, reject) => {
    // Other files are drained. Their stream fails too when the body breaks off; the parser reports that (below), and
    // an error event with no listener would end the process.
    parser.on("file", (name, stream) => (name === FILE_FIELD ? resolve(stream) : stream.on("error", () => {}).resume()));
    parser.on("error", reject);
  });
  const source = Readable.from(limitedChunks(request, limit + MULTIPART_OVERHEAD));
  const parsed = pipeline(source, parser);
  file.catch(() => {});
  parsed.catch(() => {});
  try {
    const stream = await Promise.race([file, parsed.then(() => null)]);
    if (!stream) throw validationFailed([{ field: FILE_FIELD, message: "is required" }], `The multipart body has no "${FILE_FIELD}" field.`);
    let size = 0;
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limit) throw payloadTooLarge(limit);
      yield chunk;
    }
    await parsed;
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw malformed((error as Error).message);
  } finally {
    source.destroy();
    parser.destroy();
  }
}
