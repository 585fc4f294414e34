/**
 * The audit trail: who did what, when, to which device or model. Events are only ever added. A service records its
 * event with the executor of the change it describes (the transaction, or the database for a single statement), so
 * the event and the change commit together or not at all: a refused or failed request leaves no event.
 *
 *   await audit.record(tx, { actor, kind: "device.created", deviceId: row.id, modelId: model.id, details: { key } });
 */
import { and, desc, eq, gte, type SQL, sql } from "drizzle-orm";
import type { Database, Executor } from "../../db/client.ts";
import { type AuditDetail, type AuditDetails, auditEvents } from "../../db/schema.ts";
import { AUDIT_PAGE_DEFAULT, type AuditEventOut, type AuditPage, type AuditQuery } from "../schemas.ts";
import { encodeCursor, toPage } from "../paging.ts";
import { auditKey } from "./cursor.ts";
import type { AuditKind } from "./kinds.ts";

/** Who caused an event: an admin's subject, `system`, or `device:<client_id>` (a request's: actorOf in lib/identity/principal.ts). */
export type Actor = string;
/** The scheduler, the rotation job and other CLI commands. */
export const SYSTEM_ACTOR: Actor = "system";
/** A transition caused by a device's own request. */
export const deviceActor = (clientId: string): Actor => `device:${clientId}`;

export type AuditEntry = {
  actor: Actor;
  kind: AuditKind;
  deviceId?: number | null;
  modelId?: number | null;
  details?: AuditDetails;
};

export type AuditRecord = typeof auditEvents.$inferSelect;

/**
 * Detail names that would say a secret is there. Services never put one in; this catches the mistake in the first
 * test that makes it, rather than in an audit log someone reads a year later.
 */
const SECRET_NAME = /secret|password|passwd|token|credential|private|encrypted/i;

export function assertNoSecretNames(details: AuditDetail, where = "details"): void {
  if (Array.isArray(details)) details.forEach((value, index) => assertNoSecretNames(value, `${where}[${index}]`));
  else if (details !== null && typeof details === "object") {
    for (const [name, value] of Object.entries(details)) {
      if (SECRET_NAME.test(name)) throw new Error(`Audit ${where}.${name}: a secret has no place in the audit trail`);
      assertNoSecretNames(value, `${where}.${name}`);
    }
  }
}

export const toAuditEvent = (row: AuditRecord): AuditEventOut => ({
  id: row.id,
  at: row.at.toISOString(),
  actor: row.actor,
  kind: row.kind as AuditKind,
  device_id: row.deviceId,
  model_id: row.modelId,
  details: row.details,
});

/** A page of `rows` read with one row more than `limit`: that extra row only says whether there is a next page. */
export function toAuditPage(rows: AuditRecord[], limit: number): AuditPage {
  const page = toPage(rows, limit, auditKey);
  return { events: page.items.map(toAuditEvent), next_cursor: page.next === null ? null : encodeCursor(page.next) };
}

export function createAuditLog(db: Database) {
  return {
    /** Adds an event, with `executor`: the transaction of the change it records, or the database. */
    async record(executor: Executor, entry: AuditEntry): Promise<void> {
      const details = entry.details ?? {};
      assertNoSecretNames(details);
      await executor.insert(auditEvents).values({
        actor: entry.actor,
        kind: entry.kind,
        deviceId: entry.deviceId ?? null,
        modelId: entry.modelId ?? null,
        details,
      });
    },

    /** One page of events, newest first; `query.cursor` continues after the page that gave it. */
    async list(query: AuditQuery): Promise<AuditPage> {
      const limit = query.limit ?? AUDIT_PAGE_DEFAULT;
      const filters: SQL[] = [];
      if (query.device_id !== undefined) filters.push(eq(auditEvents.deviceId, query.device_id));
      if (query.model_id !== undefined) filters.push(eq(auditEvents.modelId, query.model_id));
      if (query.since) filters.push(gte(auditEvents.at, query.since));
      if (query.cursor) {
        filters.push(sql`(${auditEvents.at}, ${auditEvents.id}) < (${query.cursor.at.toISOString()}::timestamptz, ${query.cursor.id})`);
      }
      const rows = await db
        .select()
        .from(auditEvents)
        .where(and(...filters))
        .orderBy(desc(auditEvents.at), desc(auditEvents.id))
        .limit(limit + 1);
      return toAuditPage(rows, limit);
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;
/** What a service needs to record its events. */
export type AuditRecorder = Pick<AuditLog, "record">;
