import { CronExpressionParser } from "cron-parser";
import { count, eq, sql } from "drizzle-orm";
import type { Database, Executor } from "../../db/client.ts";
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

/** Every OK device becomes QUEUED; returns how many. Counted in the database: a fleet need not travel back. */
export async function queueAllOk(db: Executor): Promise<number> {
  const queued = db
    .$with("queued")
    .as(db.update(devices).set({ rotationState: "QUEUED", updatedAt: sql`now()` }).where(eq(devices.rotationState, "OK")).returning({ id: devices.id }));
  const [result] = await db.with(queued).select({ n: count() }).from(queued);
  return result?.n ?? 0;
}
