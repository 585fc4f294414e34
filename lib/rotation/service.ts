import { and, asc, count, eq, gt, isNull, max, not, or, type SQL, sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { deviceModels, devices } from "../../db/schema.ts";
import type { Actor, AuditRecorder } from "../audit/log.ts";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { deviceNotFound } from "../errors.ts";
import { type Page, toPage } from "../paging.ts";
import type { DashboardCounts, RotationStatus } from "../schemas.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import { lockDevice, type RotationEngine } from "./engine.ts";
import { countsByState as shownCounts, enqueue, rotationStateIs, rotationStateSql } from "./queue.ts";
import { nextOccurrence, queueAllOk, queueScheduled, type Schedule } from "./schedule.ts";

type CycleSummary = {
  baseline_recorded: boolean;
  queued: number;
  timed_out: number;
  retired_previous_secrets: number;
  started: string | null;
  pending: string | null;
  /** Work that was due but not done (a timeout not restored, a due device not started); empty when all went well. */
  errors: string[];
};

const DAY_MS = 86_400_000;

export const dashboardGroups = ["healthy", "warning", "critical"] as const;
export type DashboardGroup = (typeof dashboardGroups)[number];

/** A page of one dashboard group: by key after `after`, days counted at `now` (the same for every page of one answer). */
export type DashboardPageQuery = { after?: string; limit: number; now: Date };

/** What the rotation routes, the CronJob and the internal timer call; the state machine itself is in engine.ts. */
export function createRotationService(deps: {
  db: Database;
  engine: RotationEngine;
  schedule: Schedule;
  criticalThresholdDays: number;
  metrics: Metrics;
  logger: Logger;
  audit: AuditRecorder;
}) {
  const { db, engine, schedule, metrics, logger, audit } = deps;

  const countsByState = (): Promise<RotationStatus["counts_by_state"]> => shownCounts(db);

  /** Devices that may hold a new secret they have not used yet (a timeout came first). */
  async function unconfirmedCount(): Promise<number> {
    const [row] = await db.select({ n: count() }).from(devices).where(eq(devices.rotationUnconfirmed, true));
    return row?.n ?? 0;
  }

  async function pendingDevice(): Promise<{ id: number; key: string } | null> {
    const [row] = await db.select({ id: devices.id, key: devices.key }).from(devices).where(eq(devices.rotationState, "PENDING")).limit(1);
    return row ?? null;
  }

  /**
   * The devices of one dashboard group after `after`, each group's condition on an index. days < threshold ⇔
   * completed > now − threshold days (to the millisecond, as the row's days are counted).
   */
  function dashboardPageWhere(group: DashboardGroup, after: string | undefined, now: Date): SQL | undefined {
    const cutoff = sql`${new Date(now.getTime() - deps.criticalThresholdDays * DAY_MS).toISOString()}::timestamptz`;
    const completedMs = sql`date_trunc('milliseconds', ${devices.lastRotationCompletedAt})`;
    const timedOut = rotationStateIs("TIMEOUT");
    const inGroup: Record<DashboardGroup, SQL | undefined> = {
      healthy: not(timedOut),
      warning: and(timedOut, sql`${completedMs} > ${cutoff}`),
      critical: and(timedOut, or(isNull(devices.lastRotationCompletedAt), sql`${completedMs} <= ${cutoff}`)),
    };
    return and(inGroup[group], after === undefined ? undefined : gt(devices.key, after));
  }

  /**
   * The dashboard's counts without reading its groups: one statement of four counts, each on an index (the state's,
   * the last completed rotation's, the unconfirmed devices'). A TIMEOUT device is a warning when its completion,
   * cut to the millisecond, is after now − threshold days (dashboardPageWhere); the cut value is after that instant
   * exactly when the time itself is at least 1 ms after it, so the comparison can use the index on the column.
   */
  async function dashboardCounts(now: Date): Promise<DashboardCounts> {
    const warningFrom = new Date(now.getTime() - deps.criticalThresholdDays * DAY_MS + 1).toISOString();
    const from = sql`${warningFrom}::timestamptz`;
    const counted = (where: SQL) => sql<number>`(select count(*) from ${devices} where ${where})`.mapWith(Number);
    const [row] = await db
      .select({
        all: sql<number>`(select count(*) from ${devices})`.mapWith(Number),
        timedOut: counted(rotationStateIs("TIMEOUT")),
        warning: counted(sql`${rotationStateIs("TIMEOUT")} and ${devices.lastRotationCompletedAt} >= ${from}`),
        unconfirmed: counted(sql`${devices.rotationUnconfirmed}`),
      })
      .from(sql`(values (1)) as one (x)`);
    const { all, timedOut, warning, unconfirmed } = row!;
    return { healthy: all - timedOut, warning, critical: timedOut - warning, unconfirmed };
  }

  return {
    engine,

    dashboardCounts,

    /** The secret for the device's provisioning request: during its rotation, the new one (see engine.issueSecret). */
    issueProvisioningSecret: engine.issueSecret,

    /** One cycle: scheduled queueing, timeouts, start next. Safe to run from several processes at once. */
    async runCycle(): Promise<CycleSummary> {
      try {
        // A failed queueing must not hold up the timeouts and the next start: it is reported and tried next cycle.
        const scheduled = await queueScheduled(db, schedule, new Date(), audit).catch((error: unknown) => {
          if (isDatabaseUnavailable(error)) throw error;
          logger.error("Scheduled queueing failed; retrying next cycle", { error: errorMessage(error) });
          return { queued: 0, baseline: false, error: `scheduled queueing failed (${errorMessage(error)}); will retry` };
        });
        const timeouts = await engine.expireTimedOut();
        const retired = await engine.retireLeftoverSecrets();
        const { started, notStarted } = await engine.startNext();
        const summary = {
          baseline_recorded: scheduled.baseline,
          queued: scheduled.queued,
          timed_out: timeouts.expired,
          retired_previous_secrets: retired,
          started: started?.key ?? null,
          pending: started?.key ?? (await pendingDevice())?.key ?? null,
          errors: [...("error" in scheduled ? [scheduled.error] : []), ...timeouts.errors, ...(notStarted ? [notStarted] : [])],
        };
        metrics.rotationJobRuns.inc({ result: summary.errors.length > 0 ? "error" : "success" });
        if (summary.errors.length) logger.warn("Rotation cycle left due work undone", summary);
        else if (summary.queued || summary.timed_out || summary.retired_previous_secrets || summary.started) logger.info("Rotation cycle", summary);
        return summary;
      } catch (error) {
        metrics.rotationJobRuns.inc({ result: "error" });
        throw error;
      }
    },

    /** Every OK device joins the queue (becomes QUEUED), and rotation starts at once. */
    async triggerAll(actor: Actor): Promise<number> {
      const queued = await db.transaction(async (tx) => {
        const queued = await queueAllOk(tx);
        await audit.record(tx, { actor, kind: "rotation.triggered", details: { queued_count: queued } });
        return queued;
      });
      await engine.startNext();
      return queued;
    },

    /** Queues one device and, if nothing is rotating, starts this very device. */
    async rotateDevice(id: number, actor: Actor): Promise<"queued" | "already_pending"> {
      const [device] = await db.select({ state: rotationStateSql, modelId: devices.deviceModelId }).from(devices).where(eq(devices.id, id));
      if (!device) throw deviceNotFound(id);
      if (device.state === "PENDING") return "already_pending";
      await db.transaction(async (tx) => {
        // Under the row lock: a device being started at this moment is PENDING once the lock is ours, and not queued.
        await lockDevice(tx, id);
        await enqueue(tx, eq(devices.id, id));
        await audit.record(tx, { actor, kind: "rotation.triggered", deviceId: id, modelId: device.modelId, details: { status: "queued", from: device.state } });
      });
      await engine.startNext(id);
      return "queued";
    },

    /** Devices per rotation state, every state present (also for the fleet gauges of /metrics). */
    countsByState,

    unconfirmedCount,

    async status(): Promise<RotationStatus> {
      // Four independent reads, side by side on the pool: the answer waits for the slowest (the counts), not the sum.
      const [pending, [last], counts, unconfirmed] = await Promise.all([
        pendingDevice(),
        db.select({ at: max(devices.lastRotationCompletedAt) }).from(devices),
        countsByState(),
        unconfirmedCount(),
      ]);
      return {
        counts_by_state: counts,
        unconfirmed_count: unconfirmed,
        pending_device_id: pending?.id ?? null,
        last_rotation_completed_at: last?.at ? new Date(last.at).toISOString() : null,
        next_scheduled_rotation: nextOccurrence(schedule, new Date()).toISOString(),
      };
    },

    /**
     * One page of a dashboard group, by key (keyset paging, lib/paging.ts), each row as its JSON text written by
     * PostgreSQL (the fields of dashboardRowSchema in its order, timestamps to the millisecond, whole days since the last
     * completed rotation; days < threshold ⇔ completed > now − threshold days, to the millisecond): the dashboard route
     * sends these as they come, without reading each row into an object and writing it out again (most of the time of a
     * 100,000-device dashboard). test/support/dashboard-oracle.ts is the plain model the tests hold it to.
     */
    async dashboardJsonPage(group: DashboardGroup, { after, limit, now }: DashboardPageQuery): Promise<Page<string>> {
      const completedMs = sql`date_trunc('milliseconds', ${devices.lastRotationCompletedAt})`;
      const days = sql`floor((${now.getTime()}::numeric - extract(epoch from ${completedMs}) * 1000) / ${DAY_MS})`;
      const json = sql<string>`concat(
        '{"id":', ${devices.id},
        ',"key":', to_json(${devices.key}),
        ',"device_name":', coalesce(to_json(${devices.deviceName})::text, 'null'),
        ',"device_model_code":', to_json(${deviceModels.code}),
        ',"rotation_state":"', ${rotationStateSql},
        '","rotation_unconfirmed":', case when ${devices.rotationUnconfirmed} then 'true' else 'false' end,
        ',"last_rotation_completed_at":', coalesce('"' || to_char(${completedMs} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null'),
        ',"days_since_rotation":', coalesce(${days}::bigint::text, 'null'),
        '}')`;
      const rows = await db
        .select({ key: devices.key, json })
        .from(devices)
        .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
        .where(dashboardPageWhere(group, after, now))
        .orderBy(asc(devices.key))
        .limit(limit + 1);
      const page = toPage(rows, limit, (row) => row.key);
      return { items: page.items.map((row) => row.json), next: page.next };
    },
  };
}


export type RotationService = ReturnType<typeof createRotationService>;
