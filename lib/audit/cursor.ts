/**
 * The page key of GET /api/audit: (at, id) of the last event of a page, written `<epoch ms>.<id>`, and carried in the
 * same opaque cursor as every list's (lib/paging.ts). Keyset paging on an immutable, unique key visits each event once
 * however many are recorded meanwhile.
 */
export type AuditCursor = { at: Date; id: number };

/** The keys auditKey writes (what a cursor of GET /api/audit may carry). */
export const AUDIT_KEY = /^\d{1,15}\.[1-9]\d{0,15}$/;

export const auditKey = ({ at, id }: AuditCursor): string => `${at.getTime()}.${id}`;

/** The (at, id) of a key AUDIT_KEY accepted. */
export function readAuditKey(key: string): AuditCursor {
  const [ms, id] = key.split(".");
  return { at: new Date(Number(ms)), id: Number(id) };
}
