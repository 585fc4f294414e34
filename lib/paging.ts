/**
 * Keyset paging of the admin lists (docs/api.md, "Long lists"). A page is the rows after a sort key, in sort-key order
 * (devices by key, models by code: both unique), so inserting or deleting rows between two requests never repeats or
 * skips a row that stays. The cursor a client gets is that key, opaque to it: base64url of `{"after": key}`.
 */
export const MAX_PAGE_LIMIT = 1000;
/** The batch size of a list streamed whole: rows per query. */
export const STREAM_BATCH = 2000;
/** The page size when a request names a cursor but no limit. */
export const DEFAULT_PAGE_LIMIT = 100;

/** A page of rows, and the sort key of its last row when more rows follow (null: this is the last page). */
export type Page<T> = { items: T[]; next: string | null };

/** Rows as JSON text, comma-joined in list order (e.g. chunks of the rotation dashboard), and how many they are. */
export type JoinedRows = { text: string | Uint8Array; rows: number };

export const encodeCursor = (after: string): string => Buffer.from(JSON.stringify({ after })).toString("base64url");

/** The sort key in `cursor`, or null when it is not a cursor whose key `keyPattern` accepts. */
export function decodeCursor(cursor: string, keyPattern: RegExp): string | null {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    const after = (value as { after?: unknown } | null)?.after;
    return typeof after === "string" && keyPattern.test(after) ? after : null;
  } catch {
    return null;
  }
}

/** Rows `limit + 1` of a query tell whether another page follows; this makes the page of them. */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => string): Page<T> {
  const items = rows.length > limit ? rows.slice(0, limit) : rows;
  return { items, next: rows.length > limit ? keyOf(items.at(-1)!) : null };
}

/** Every page of a list, one after the other: for a list streamed whole, never held whole. */
export async function* allPages<T>(fetchPage: (after: string | undefined) => Promise<Page<T>>): AsyncGenerator<T[]> {
  let after: string | undefined;
  do {
    const page = await fetchPage(after);
    if (page.items.length > 0) yield page.items;
    after = page.next ?? undefined;
  } while (after !== undefined);
}

/** A LIKE pattern matching `text` anywhere, its wildcard characters taken literally. */
export const containsPattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
