import { CronExpressionParser } from "cron-parser";
import { and, asc, count, eq, gt, lte, type SQL, sql } from "drizzle-orm";
import type { Database, Transaction } from "../../db/client.ts";
import { devices, settings } from "../../db/schema.ts";
import { type AuditRecorder, SYSTEM_ACTOR } from "../audit/log.ts";

const BASELINE_KEY = "rotation.schedule_baseline";

export type Schedule = { cron: string; timezone: string };

export function nextOccurrence(schedule: Schedule, after: Date): Date {
  return CronExpressionParser.parse(schedule.cron, { tz: schedule.timezone, currentDate: after }).next().toDate();
}

function previousOccurrence(schedule: Schedule, atOrBefore: Date): Date {
  return CronExpressionParser.parse(schedule.cron, { tz: schedule.timezone, currentDate: new Date(atOrBefore.getTime() + 1) })
    .prev()
    .toDate();
}

/**
 * Scheduled queueing: when a cron occurrence has passed since the last time we looked, every OK device becomes
 * QUEUED. The very first run only records the baseline, so installing the backend does not rotate the fleet at once.
 * The baseline row is locked for the whole step, so two jobs at once queue the fleet once.
 */
export async function queueScheduled(db: Database, schedule: Schedule, now: Date, audit: AuditRecorder): Promise<{ queued: number; baseline: boolean }> {
  return db.transaction(async (tx) => {
    await tx.insert(settings).values({ key: BASELINE_KEY, value: "" }).onConflictDoNothing();
    const [row] = await tx.select().from(settings).where(eq(settings.key, BASELINE_KEY)).for("update");
    const recordBaseline = () => tx.update(settings).set({ value: now.toISOString(), updatedAt: now }).where(eq(settings.key, BASELINE_KEY));
    if (!row?.value) {
      await recordBaseline();
      return { queued: 0, baseline: true };
    }
    const due = previousOccurrence(schedule, now) > new Date(row.value);
    if (!due) return { queued: 0, baseline: false };
    const queued = await queueAllOk(tx);
    await recordBaseline();
    await audit.record(tx, { actor: SYSTEM_ACTOR, kind: "rotation.scheduled", details: { queued_count: queued } });
    return { queued, baseline: false };
  });
}

/**
 * Devices queued per statement. One statement for a fleet of 100,000 takes seconds on a busy machine: past the statement
 * timeout that keeps every query short (DATABASE_STATEMENT_TIMEOUT_MS, and the client's own deadline after it).
 */
const QUEUE_BATCH = 10_000;

/**
 * Every OK device becomes QUEUED; returns how many. In one transaction (all or none), a key range of at most `batch`
 * devices per statement along the (rotation_state, key) index; counted in the database: no fleet travels back.
 */
export async function queueAllOk(tx: Transaction, batch = QUEUE_BATCH): Promise<number> {
  let total = 0;
  let after: string | null = null;
  for (;;) {
    const from: SQL | undefined = after === null ? undefined : gt(devices.key, after);
    const [last]: { key: string }[] = await tx
      .select({ key: devices.key })
      .from(devices)
      .where(and(eq(devices.rotationState, "OK"), from))
      .orderBy(asc(devices.key))
      .offset(batch - 1)
      .limit(1);
    const inRange = and(eq(devices.rotationState, "OK"), from, last ? lte(devices.key, last.key) : undefined);
    const queued = tx.$with("queued").as(tx.update(devices).set({ rotationState: "QUEUED", updatedAt: sql`now()` }).where(inRange).returning({ id: devices.id }));
    const [result] = await tx.with(queued).select({ n: count() }).from(queued);
    total += result?.n ?? 0;
    if (!last) return total;
    after = last.key;
  }
}
