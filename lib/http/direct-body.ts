import type { Readable } from "node:stream";

/** A body the Node adapter can hand to the socket as it is: text, bytes, or a Node stream. */
export type DirectBody = string | Uint8Array | Readable;

const DIRECT_BODY = Symbol("direct body");
type Marked = Response & { [DIRECT_BODY]?: DirectBody };

/**
 * Marks `response` as carrying `body`, which lib/http/node-adapter.ts then writes straight to the socket instead of
 * reading the Response's web stream (a stream per request cost more CPU than the whole rest of a device request).
 * The Response itself still carries the same body for anyone else who reads it (a test, Bun).
 */
export function withDirectBody(response: Response, body: DirectBody): Response {
  (response as Marked)[DIRECT_BODY] = body;
  return response;
}

export const directBody = (response: Response): DirectBody | undefined => (response as Marked)[DIRECT_BODY];
