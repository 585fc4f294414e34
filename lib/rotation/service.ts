import { count, eq, max } from "drizzle-orm";
import type { Database, DatabaseHandle } from "../../db/client.ts";
import { devices } from "../../db/schema.ts";
import type { Actor, AuditRecorder } from "../audit/log.ts";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { deviceNotFound } from "../errors.ts";
import type { RotationStatus } from "../schemas.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import { lockDevice, type RotationEngine } from "./engine.ts";
import { createDashboard } from "./dashboard.ts";
import { countsByState as shownCounts, enqueue, rotationStateSql } from "./queue.ts";
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

/** What the rotation routes, the CronJob and the internal timer call; the state machine itself is in engine.ts. */
export function createRotationService(deps: {
  db: Database;
  rawTexts: DatabaseHandle["rawTexts"];
  engine: RotationEngine;
  schedule: Schedule;
  criticalThresholdDays: number;
  metrics: Metrics;
  logger: Logger;
  audit: AuditRecorder;
}) {
  const { db, engine, schedule, metrics, logger, audit } = deps;
  const dashboard = createDashboard({ db, rawTexts: deps.rawTexts, criticalThresholdDays: deps.criticalThresholdDays });

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

  return {
    engine,

    dashboardCounts: dashboard.counts,

    /** One page of a dashboard group, by key, each row its JSON text. */
    dashboardJsonPage: dashboard.page,

    /** The whole of a dashboard group, a chunk of rows at a time (lib/rotation/dashboard.ts). */
    dashboardJsonChunks: dashboard.chunks,

    /** Renders the dashboard's chunks that are not fresh, in the background of the server; returns how many. */
    refreshDashboard: dashboard.refresh,

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
  };
}


export type RotationService = ReturnType<typeof createRotationService>;
