import { jsonTextTooDeep, refuseUnsafeInput, tooDeep } from "../safe-input.ts";
import { AppError, badRequest, validationFailed } from "../errors.ts";

const JSON_BODY_LIMIT = 1024 * 1024;

export const payloadTooLarge = (limit: number) =>
  new AppError(413, "PAYLOAD_TOO_LARGE", `The request body is larger than the limit of ${limit} bytes.`, { limit_bytes: limit });

export const unsupportedMediaType = (expected: string[]) =>
  new AppError(415, "UNSUPPORTED_MEDIA_TYPE", `Send the body as ${expected.join(" or ")}.`, { expected });

export const mediaType = (request: Request) => request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";

/** Rejects a body by its Content-Length before reading it; the streamed count below catches a lying header. */
function assertDeclaredLength(request: Request, limit: number) {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw payloadTooLarge(limit);
}

/** Yields the body's chunks, failing with 413 as soon as more than `limit` bytes have arrived. */
export async function* limitedChunks(request: Request, limit: number): AsyncGenerator<Uint8Array> {
  assertDeclaredLength(request, limit);
  if (!request.body) return;
  let received = 0;
  const reader = request.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      received += value.byteLength;
      if (received > limit) throw payloadTooLarge(limit);
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The whole body as bytes, at most `limit` (413 beyond). */
export async function readBytes(request: Request, limit: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of limitedChunks(request, limit)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function readText(request: Request, limit: number): Promise<string> {
  const bytes = await readBytes(request, limit);
  try {
    // Fatal: invalid UTF-8 would otherwise become U+FFFD and be stored as if the client had sent that.
    return strictUtf8.decode(bytes);
  } catch {
    throw badRequest("The request body is not valid UTF-8.", "INVALID_UTF8");
  }
}

export async function readJsonBody(request: Request, limit = JSON_BODY_LIMIT): Promise<unknown> {
  const type = mediaType(request);
  if (type !== "application/json" && !type.endsWith("+json")) throw unsupportedMediaType(["application/json"]);
  const text = await readText(request, limit);
  if (text.trim() === "") throw badRequest("The request body is empty; a JSON object is expected.", "EMPTY_BODY");
  if (jsonTextTooDeep(text)) throw validationFailed([tooDeep("body")], "The request body is nested too deeply.");
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest("The request body is not valid JSON.", "MALFORMED_JSON");
  }
}

/** A text body of one of the given media types (application/json also as any +json), size-limited (413) and strictly UTF-8. */
export async function readTextBody(request: Request, limit: number, types: string[]): Promise<string> {
  const type = mediaType(request);
  const json = types.includes("application/json") && /^application\/[\w.!#$&^+-]+\+json$/.test(type);
  if (!types.includes(type) && !json) throw unsupportedMediaType(types);
  return readText(request, limit);
}

/** OAuth2 token requests are a few hundred bytes. */
const FORM_BODY_LIMIT = 64 * 1024;

export async function readFormBody(request: Request, limit = FORM_BODY_LIMIT): Promise<URLSearchParams> {
  if (mediaType(request) !== "application/x-www-form-urlencoded") throw unsupportedMediaType(["application/x-www-form-urlencoded"]);
  const form = new URLSearchParams(await readText(request, limit));
  refuseUnsafeInput(Object.fromEntries(form));
  return form;
}
