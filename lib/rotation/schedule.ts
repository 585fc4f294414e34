import { CronExpressionParser } from "cron-parser";
import { and, asc, eq, gt, lte, type SQL } from "drizzle-orm";
import type { Database, Transaction } from "../../db/client.ts";
import { devices, settings } from "../../db/schema.ts";
import { type AuditRecorder, SYSTEM_ACTOR } from "../audit/log.ts";
import { isDeadlock, isForeignKeyViolation } from "../db-errors.ts";
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

/**
 * Devices queued per statement: one statement for a whole fleet of 100,000 takes about a second on a quiet machine (the
 * rows and their live events), which a busy one stretches past the statement timeout (DATABASE_STATEMENT_TIMEOUT_MS).
 * Each statement costs its own overhead: the whole trigger took 1.0–1.1 s in one statement, 1.3 s in statements of
 * 25,000 and 1.5 s in statements of 10,000 (docs/performance.md).
 */
const QUEUE_BATCH = 25_000;
/** How often a key range is tried again when a device of it was deleted, or an admin's rotate crossed it. */
const QUEUE_ATTEMPTS = 3;

/**
 * Every OK device not queued yet joins the rotation queue (lib/rotation/queue.ts); returns how many. In one
 * transaction (all or none), a key range of at most `batch` devices per statement along the (rotation_state, key)
 * index. A range is tried again, from a savepoint, when a device it read was deleted before its queue row was checked
 * against it (a foreign-key violation) or a deadlock ended it.
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
    total += await retried(() => tx.transaction((savepoint) => enqueue(savepoint, inRange)));
    if (!last) return total;
    after = last.key;
  }
}

async function retried(work: () => Promise<number>): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= QUEUE_ATTEMPTS || !(isForeignKeyViolation(error) || isDeadlock(error))) throw error;
    }
  }
}
