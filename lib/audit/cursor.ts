/**
 * The page cursor of GET /api/audit: the sort key (at, id) of the last event of a page, as opaque base64url text.
 * Keyset paging on an immutable, unique key visits each event once however many are recorded meanwhile.
 */
export type AuditCursor = { at: Date; id: number };

export const encodeCursor = ({ at, id }: AuditCursor): string => Buffer.from(`${at.getTime()}.${id}`).toString("base64url");

/** The cursor `text` holds, or null when it is not one encodeCursor made. */
export function decodeCursor(text: string): AuditCursor | null {
  const match = /^(\d{1,15})\.([1-9]\d{0,15})$/.exec(Buffer.from(text, "base64url").toString("latin1"));
  if (!match) return null;
  const id = Number(match[2]);
  const at = new Date(Number(match[1]));
  if (!Number.isSafeInteger(id) || Number.isNaN(at.getTime())) return null;
  return { at, id };
}
