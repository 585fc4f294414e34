/**
 * The audit log in memory: events kept in a list, paged as the real one pages (newest first by (at, id), the same
 * cursor and page shape), held to it by the audit log contract (test/support/audit-contract.ts).
 */
import { type AuditLog, type AuditRecord, assertNoSecretNames, toAuditPage } from "../../../lib/audit/log.ts";
import { AUDIT_PAGE_DEFAULT } from "../../../lib/schemas.ts";

export type FakeAuditLog = AuditLog & { events: AuditRecord[] };

const newerFirst = (a: AuditRecord, b: AuditRecord) => b.at.getTime() - a.at.getTime() || b.id - a.id;

export function fakeAuditLog(): FakeAuditLog {
  const events: AuditRecord[] = [];
  return {
    events,
    // The executor is the real log's transaction; here an event is kept at once (the fakes have no transactions).
    async record(_executor, entry) {
      const details = entry.details ?? {};
      assertNoSecretNames(details);
      events.push({ id: events.length + 1, at: new Date(), actor: entry.actor, kind: entry.kind, deviceId: entry.deviceId ?? null, modelId: entry.modelId ?? null, details });
    },
    async list(query) {
      const { cursor, since } = query;
      const rows = events
        .filter(
          (event) =>
            (query.device_id === undefined || event.deviceId === query.device_id) &&
            (query.model_id === undefined || event.modelId === query.model_id) &&
            (!since || event.at >= since) &&
            (!cursor || newerFirst(event, { ...event, ...cursor }) > 0),
        )
        .sort(newerFirst);
      const limit = query.limit ?? AUDIT_PAGE_DEFAULT;
      return toAuditPage(rows.slice(0, limit + 1), limit);
    },
  };
}
