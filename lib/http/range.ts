/**
 * HTTP range requests and validators (RFC 9110 §13–14) for serving one stored representation.
 * Not range-parser 1.x: it answers 416 to a suffix longer than the file and to a reversed range, where RFC 9110
 * sends the whole file (2.x fixes that but needs Node 22). Not fresh: it never answers 304 to a request with
 * `Cache-Control: no-cache`, which fetch() adds to every request carrying If-None-Match.
 */

type ByteRange = { start: number; end: number };

/**
 * The single byte range a `Range` header asks for, or:
 * - `null` when the whole representation should be sent (no header, another unit, malformed, or several
 *   ranges — answering those with the full 200 is allowed and keeps the server simple);
 * - `"unsatisfiable"` when no byte of the requested range exists (→ 416).
 */
export function parseRange(header: string | null, size: number): ByteRange | "unsatisfiable" | null {
  const match = header?.trim().match(/^bytes\s*=\s*(\d*)\s*-\s*(\d*)$/i);
  if (!match) return null;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === "" && last === "") return null;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return null;
  if (start >= size) return "unsatisfiable";
  return { start, end: last === "" ? size - 1 : Math.min(Number(last), size - 1) };
}

const opaqueTags = (header: string) => header.split(",").map((tag) => tag.trim()).filter(Boolean);
const weakless = (tag: string) => tag.replace(/^W\//, "");

/** `If-None-Match` uses the weak comparison: `W/"x"` matches `"x"`. */
export function noneMatchHits(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return opaqueTags(header).some((tag) => tag === "*" || weakless(tag) === etag);
}

/** HTTP dates carry whole seconds; compare at that precision. */
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/** `If-Modified-Since` (only consulted without `If-None-Match`): true when the representation is unchanged. */
export function notModifiedSince(header: string | null, lastModified: Date): boolean {
  if (header === null) return false;
  const since = Date.parse(header);
  return !Number.isNaN(since) && seconds(lastModified) <= Math.floor(since / 1000);
}

/** `If-Range`: the range applies only to the representation the client already holds part of (strong match). */
export function ifRangeHolds(header: string | null, etag: string, lastModified: Date): boolean {
  if (header === null) return true;
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith("W/")) return value === etag;
  const date = Date.parse(value);
  return !Number.isNaN(date) && Math.floor(date / 1000) === seconds(lastModified);
}
