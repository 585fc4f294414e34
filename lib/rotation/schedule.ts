import { CronExpressionParser } from "cron-parser";
import { eq } from "drizzle-orm";
import type { Database, Transaction } from "../../db/client.ts";
import { devices, settings } from "../../db/schema.ts";
import { type AuditRecorder, SYSTEM_ACTOR } from "../audit/log.ts";
import { enqueue } from "./queue.ts";

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

/** Every OK device not queued yet joins the rotation queue; returns how many (lib/rotation/queue.ts). */
export const queueAllOk = (tx: Transaction): Promise<number> => enqueue(tx, eq(devices.rotationState, "OK"));
