import { Readable } from "node:stream";
import { Response as FastResponse } from "@whatwg-node/fetch";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { AppError, upstreamUnavailable } from "../errors.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { JoinedRows } from "../paging.ts";
import { withDirectBody } from "./direct-body.ts";

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return jsonText(JSON.stringify(body), status, { "content-type": "application/json; charset=utf-8", ...headers });
}

/**
 * JSON that is already text (e.g. a stored device config), sent verbatim. The server writes the text straight to the
 * socket (./direct-body.ts); the Response is the ponyfill's, which costs less to make than a native one and makes
 * its body stream only if someone reads it (test/bench/iot-config.bench.ts).
 */
export function jsonText(text: string, status = 200, headers: Record<string, string> = {}): Response {
  // With its length stated the ponyfill keeps the headers as this object instead of copying them into a Map to add it.
  const length = String(Buffer.byteLength(text));
  const response = new FastResponse(text, { status, headers: { "content-type": "application/json", "content-length": length, ...headers } }) as unknown as Response;
  return withDirectBody(response, text);
}

/** An array of a streamed JSON object: its name and its rows, a batch at a time (lib/paging.ts allPages). */
export type StreamedArray =
  | { name: string; batches: AsyncGenerator<unknown[]>; json?: false }
  /**
   * Rows already JSON text (as JSON.stringify would write them, e.g. built by the database), several comma-joined in
   * one text, with how many they are: sent as they are.
   */
  | { name: string; batches: AsyncGenerator<JoinedRows[]>; json: true };

/**
 * `{"<name>": [...rows], …, <trailer's fields>}`, each array written as its batches arrive, so a long list is never
 * held whole: byte for byte what json() makes of the same object. `trailer` gets the arrays' lengths (e.g. a count).
 * The first batch is read before the answer starts, so a database that fails at once still gets the error envelope.
 * A failure later is logged and ends the body where it is: the status has gone out, and a stream that errors leaves the
 * client waiting for the rest; cut short, the JSON does not parse (its closing brace comes last), never a shorter list.
 * The Node adapter writes the texts to the socket as they are (./direct-body.ts): through the web stream, encoding
 * them first, the 22 MB of a 100,000-device dashboard took twice the CPU. Either body may be read, not both.
 */
export async function streamedJson(
  arrays: StreamedArray[],
  trailer: (lengths: number[]) => Promise<Record<string, unknown>>,
  logger: Pick<Logger, "error">,
): Promise<Response> {
  const first = arrays.length > 0 ? await arrays[0]!.batches.next() : null;
  // Every array's batches are given back however the body ends, also when it is dropped before its first read (a HEAD,
  // a client gone at once): a generator that never ran does not run its own cleanup when it is returned.
  const release = () => Promise.all(arrays.map((array) => array.batches.return(undefined))).then(() => {}, () => {});
  const texts = jsonTexts(arrays, first, trailer, logger, release);
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await texts.next();
        if (next.done) controller.close();
        else controller.enqueue(typeof next.value === "string" ? encoder.encode(next.value) : next.value);
      },
      async cancel() {
        await texts.return(undefined);
        await release();
      },
    },
    // Read only when someone reads it: else it would take the first text from the direct body.
    { highWaterMark: 0 },
  );
  const response = new Response(body, { headers: { "content-type": "application/json; charset=utf-8" } });
  // One text ahead at most: a batch is up to a few MB.
  const direct = Readable.from(texts, { objectMode: true, highWaterMark: 1 }).once("close", () => void release());
  return withDirectBody(response, direct);
}

const COMMA = Buffer.from(",");

/** The texts of streamedJson's body, a batch at a time; stops where a batch fails, and releases every array's batches. */
async function* jsonTexts(
  arrays: StreamedArray[],
  first: IteratorResult<unknown[]> | null,
  trailer: (lengths: number[]) => Promise<Record<string, unknown>>,
  logger: Pick<Logger, "error">,
  release: () => Promise<void>,
): AsyncGenerator<string | Uint8Array> {
  const lengths = arrays.map(() => 0);
  try {
    for (const [index, array] of arrays.entries()) {
      yield `${index === 0 ? "{" : ","}${JSON.stringify(array.name)}:[`;
      for (let batch = index === 0 ? first! : await array.batches.next(); !batch.done; batch = await array.batches.next()) {
        const rows: unknown[] = batch.value;
        if (array.json) {
          const pieces: Uint8Array[] = [];
          for (const part of rows as JoinedRows[]) {
            if (lengths[index]! > 0) pieces.push(COMMA);
            lengths[index]! += part.rows;
            pieces.push(typeof part.text === "string" ? Buffer.from(part.text) : part.text);
          }
          yield Buffer.concat(pieces);
        } else {
          const separator = lengths[index]! > 0 ? "," : "";
          lengths[index]! += rows.length;
          yield Buffer.from(separator + rows.map((row) => JSON.stringify(row)).join(","));
        }
      }
      yield "]";
    }
    yield `${arrays.length === 0 ? "{" : ","}${JSON.stringify(await trailer(lengths)).slice(1)}`;
  } catch (error) {
    logger.error("A streamed answer broke off", { error: errorMessage(error), rows_sent: lengths.reduce((a, b) => a + b, 0) });
  } finally {
    await release();
  }
}

/** `{"<name>": [...rows], "count": n}` streamed (see streamedJson). */
export const streamedList = (name: string, batches: AsyncGenerator<unknown[]>, logger: Pick<Logger, "error">) =>
  streamedJson([{ name, batches }], async ([count]) => ({ count }), logger);

export const noContent = () => new Response(null, { status: 204 });

/** The one place an error becomes a response (CONTRACT §1 envelope). Unknown errors never leak their text. */
export function errorResponse(error: unknown, requestId: string): Response {
  const known =
    error instanceof AppError ? error : isDatabaseUnavailable(error) ? upstreamUnavailable("database", "The database is not reachable right now; try again shortly.") : null;
  const status = known?.status ?? 500;
  const message = known?.message ?? "Something went wrong on our side. The error was logged.";
  return json(
    {
      ...(known?.oauthError ? { error: known.oauthError, error_description: message } : { error: message }),
      ...(known?.alsoAs ? { [known.alsoAs]: message } : {}),
      code: known?.code ?? "INTERNAL_ERROR",
      details: known?.details ?? null,
      correlationId: requestId,
    },
    status,
    known?.headers ?? {},
  );
}

/** A 302 (or, after a form post, 303) that browsers follow, with cookies to set; never cached (it carries per-login state). */
export function redirect(location: string, cookies: string[] = [], status: 302 | 303 = 302): Response {
  const headers = new Headers({ location, "cache-control": "no-store" });
  for (const cookie of cookies) headers.append("set-cookie", cookie);
  return new Response(null, { status, headers });
}
