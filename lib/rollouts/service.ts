/**
 * Firmware rollouts and pins (docs/rollouts.md): starting one (from the API or an upload), its admin actions, the
 * periodic step (internal scheduler and CronJob), and the firmware notices to devices whose target changed.
 */
import { and, asc, desc, eq, inArray, isNull, sql } from "drizzle-orm";
import type { Database, Transaction } from "../../db/client.ts";
import { devices, firmwareVersions, type ModelRow, type RolloutPlan, rolloutDevices, type RolloutRow, rollouts } from "../../db/schema.ts";
import { conflict, deviceNotFound, modelNotFound, notFound, validationFailed } from "../errors.ts";
import type { VersionRow } from "../firmware/versions.ts";
import { type Actor, type AuditRecorder, SYSTEM_ACTOR } from "../audit/log.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { Notifier } from "../mqtt.ts";
import { abort, activeRolloutOf, audited, tallyColumns, type Tally, complete, lockModel, notAdmitted, openNextWave, promote, type StepContext, step, tallyOf, type TargetChange } from "./engine.ts";
import { createRolloutEvents } from "./events.ts";
import { type Candidate, type Confirmations, preflight } from "./preflight.ts";
import { type CreateRollout, DEFAULT_PLAN, type Rollout, type RolloutDetail } from "./schemas.ts";
import { wavesOf } from "./waves.ts";

const ROWS_PER_INSERT = 1_000;


const iso = (date: Date | null) => date?.toISOString() ?? null;

const NO_DEVICES: Pick<Tally, "pending" | "admitted" | "succeeded" | "failed"> = { pending: 0, admitted: 0, succeeded: 0, failed: 0 };

const toRollout = (row: RolloutRow, version: string, tally: Pick<Tally, "pending" | "admitted" | "succeeded" | "failed">): Rollout => ({
  id: row.id,
  device_model_id: row.deviceModelId,
  state: row.state,
  version_id: row.versionId,
  version,
  previous_version_id: row.previousVersionId,
  current_wave: row.currentWave,
  wave_started_at: row.waveStartedAt.toISOString(),
  pause_reason: row.pauseReason,
  plan: row.plan,
  counts: { pending: tally.pending, admitted: tally.admitted, succeeded: tally.succeeded, failed: tally.failed },
  created_by: row.createdBy,
  created_at: row.createdAt.toISOString(),
  updated_at: row.updatedAt.toISOString(),
  completed_at: iso(row.completedAt),
});
const rolloutNotFound = (model: ModelRow, id: number) => notFound(`Device model "${model.code}" has no rollout ${id}.`, "ROLLOUT_NOT_FOUND");

function planOf(body: CreateRollout): RolloutPlan {
  return {
    canary_device_ids: body.canary_device_ids ?? [],
    canary_count: body.canary_device_ids ? body.canary_device_ids.length : (body.canary_count ?? DEFAULT_PLAN.canary_count),
    waves: body.waves ?? [...DEFAULT_PLAN.waves],
    soak_seconds: body.soak_seconds ?? DEFAULT_PLAN.soak_seconds,
    wave_timeout_seconds: body.wave_timeout_seconds ?? DEFAULT_PLAN.wave_timeout_seconds,
    max_concurrent: body.max_concurrent ?? DEFAULT_PLAN.max_concurrent,
    failure_threshold_percent: body.failure_threshold_percent ?? DEFAULT_PLAN.failure_threshold_percent,
  };
}

export function createRolloutService(deps: { db: Database; notifier: Notifier; logger: Logger; audit: AuditRecorder; offlineAfterSeconds: number }) {
  const { db, notifier, logger, audit } = deps;
  const events = createRolloutEvents({ db, logger });

  const contextOf = (tx: Transaction, actor: Actor, changes: TargetChange[]): StepContext => ({
    tx,
    now: new Date(),
    offlineAfterMs: deps.offlineAfterSeconds * 1000,
    changes,
    actor,
    audit,
  });

  /** Runs `work` for `actor` holding the model's row lock; then sends the firmware notices of the targets it changed. */
  async function withModel<T>(modelId: number, actor: Actor, work: (ctx: StepContext, model: ModelRow) => Promise<T>): Promise<T> {
    const changes: TargetChange[] = [];
    const result = await db.transaction(async (tx) => {
      const model = await lockModel(tx, modelId);
      if (!model) throw modelNotFound(modelId);
      return work(contextOf(tx, actor, changes), model);
    });
    await notify(changes);
    return result;
  }

  /** Notifier.publish never throws: a device that misses a notice gets its new target at its next check. */
  async function notify(changes: TargetChange[]): Promise<void> {
    if (changes.length === 0) return;
    const ids = [...new Set(changes.map((change) => change.versionId).filter((id) => id !== null))];
    const names = new Map(
      ids.length === 0 ? [] : (await db.select({ id: firmwareVersions.id, version: firmwareVersions.version }).from(firmwareVersions).where(inArray(firmwareVersions.id, ids))).map((row) => [row.id, row.version]),
    );
    await Promise.all(changes.map(({ clientId, versionId }) => notifier.publish("firmware", clientId, { firmware_version: versionId === null ? null : (names.get(versionId) ?? null) })));
  }

  async function findRollout(tx: Transaction | Database, model: ModelRow, id: number): Promise<RolloutRow> {
    const [row] = await tx.select().from(rollouts).where(and(eq(rollouts.id, id), eq(rollouts.deviceModelId, model.id)));
    if (!row) throw rolloutNotFound(model, id);
    return row;
  }

  async function describe(tx: Transaction | Database, row: RolloutRow): Promise<Rollout> {
    const tally = await tallyOf(tx as Transaction, row.id);
    const [version] = await tx.select({ version: firmwareVersions.version }).from(firmwareVersions).where(eq(firmwareVersions.id, row.versionId));
    return toRollout(row, version?.version ?? "", tally);
  }

  /** Which devices take part and in which wave; devices that already target the version have nothing to do. */
  async function enrol(ctx: StepContext, model: ModelRow, rollout: RolloutRow, plan: RolloutPlan): Promise<void> {
    const candidates = await ctx.tx
      .select({ id: devices.id, lastSeenAt: devices.lastSeenAt })
      .from(devices)
      .where(
        and(
          eq(devices.deviceModelId, model.id),
          isNull(devices.firmwarePinVersionId),
          sql`coalesce(${devices.rolloutVersionId}, ${model.stableVersionId}::int) is distinct from ${rollout.versionId}::int`,
        ),
      )
      .orderBy(asc(devices.id));
    const known = new Set(candidates.map((device) => device.id));
    const missing = plan.canary_device_ids.filter((id) => !known.has(id));
    if (missing.length > 0) {
      throw validationFailed(
        missing.map((id) => ({ field: "canary_device_ids", message: `device ${id} is not an unpinned device of model "${model.code}" that needs this version` })),
        `Canary devices must be unpinned devices of model "${model.code}" whose target is not already this version.`,
      );
    }
    const explicit = new Set(plan.canary_device_ids);
    const bySighting = candidates.filter((device) => !explicit.has(device.id)).sort((a, b) => (b.lastSeenAt?.getTime() ?? -1) - (a.lastSeenAt?.getTime() ?? -1) || a.id - b.id);
    const canaries = [...plan.canary_device_ids, ...(explicit.size > 0 ? [] : bySighting.slice(0, plan.canary_count).map((device) => device.id))];
    const chosen = new Set(canaries);
    const order = [...canaries, ...candidates.filter((device) => !chosen.has(device.id)).map((device) => device.id)];
    const waves = wavesOf(order.length, canaries.length, plan.waves);
    const failedBefore = await failedEarlier(ctx.tx, rollout.versionId);
    const rows = order.map((deviceId, position) => ({
      rolloutId: rollout.id,
      deviceId,
      wave: waves[position]!,
      position,
      ...(failedBefore.get(deviceId) !== undefined && { state: "failed" as const, failureReason: failedBefore.get(deviceId)!, settledAt: ctx.now }),
    }));
    for (let start = 0; start < rows.length; start += ROWS_PER_INSERT) await ctx.tx.insert(rolloutDevices).values(rows.slice(start, start + ROWS_PER_INSERT));
  }

  /** Devices whose last rollout of this version failed them (and no admin retried): not offered it again. */
  async function failedEarlier(tx: Transaction, versionId: number): Promise<Map<number, string>> {
    const rows = await tx
      .selectDistinctOn([rolloutDevices.deviceId], { deviceId: rolloutDevices.deviceId, state: rolloutDevices.state, rolloutId: rollouts.id })
      .from(rolloutDevices)
      .innerJoin(rollouts, eq(rollouts.id, rolloutDevices.rolloutId))
      .where(eq(rollouts.versionId, versionId))
      .orderBy(rolloutDevices.deviceId, desc(rollouts.id));
    return new Map(rows.filter((row) => row.state === "failed").map((row) => [row.deviceId, `failed this version in rollout ${row.rolloutId} (retry it to offer it again)`]));
  }

  async function start(ctx: StepContext, model: ModelRow, version: VersionRow, body: CreateRollout, source: "api" | "upload" | "revert"): Promise<RolloutRow> {
    const active = await activeRolloutOf(ctx.tx, model.id);
    if (active) throw conflict(`Device model "${model.code}" already has an active rollout (${active.id}); pause, finish or abort it first.`, "ROLLOUT_ACTIVE");
    // An upload ran the same checks before it stored anything (check()): refusing now would leave its version stored.
    if (source !== "upload") await preflight(ctx.tx, model, version, body);
    const plan = planOf(body);
    const [rollout] = await ctx.tx
      .insert(rollouts)
      .values({ deviceModelId: model.id, versionId: version.id, previousVersionId: model.stableVersionId, plan, createdBy: ctx.actor, waveStartedAt: ctx.now })
      .returning();
    await audited(ctx, rollout!, "rollout.started", { version: version.version, version_id: version.id, source, plan });
    await enrol(ctx, model, rollout!, plan);
    const tally = await tallyOf(ctx.tx, rollout!.id);
    // Nothing to roll out (no device needs the version): it is the stable version at once.
    if (tally.total === 0) await complete(ctx, rollout!);
    else await step(ctx, rollout!);
    return (await findRollout(ctx.tx, model, rollout!.id))!;
  }

  async function versionOf(tx: Transaction, model: ModelRow, id: number): Promise<VersionRow> {
    const [version] = await tx.select().from(firmwareVersions).where(and(eq(firmwareVersions.id, id), eq(firmwareVersions.deviceModelId, model.id)));
    if (!version) throw validationFailed([{ field: "version_id", message: `device model "${model.code}" has no firmware version ${id}` }], `Device model "${model.code}" has no firmware version ${id}.`);
    return version;
  }

  /** An admin action on an active rollout. */
  function action(name: string, states: RolloutRow["state"][], act: (ctx: StepContext, rollout: RolloutRow) => Promise<void>) {
    return (modelId: number, id: number, actor: Actor): Promise<Rollout> =>
      withModel(modelId, actor, async (ctx, model) => {
        const rollout = await findRollout(ctx.tx, model, id);
        if (!states.includes(rollout.state)) throw conflict(`Rollout ${id} is ${rollout.state}: it cannot ${name}.`, "ROLLOUT_STATE");
        await act(ctx, rollout);
        return describe(ctx.tx, await findRollout(ctx.tx, model, id));
      });
  }

  const setState = (ctx: StepContext, rollout: RolloutRow, fields: Partial<RolloutRow>) =>
    ctx.tx.update(rollouts).set({ ...fields, updatedAt: ctx.now }).where(eq(rollouts.id, rollout.id));

  return {
    ...events,

    async create(modelId: number, body: CreateRollout, actor: Actor): Promise<Rollout> {
      return withModel(modelId, actor, async (ctx, model) => describe(ctx.tx, await start(ctx, model, await versionOf(ctx.tx, model, body.version_id), body, "api")));
    },

    async list(model: ModelRow): Promise<Rollout[]> {
      // Two queries however many rollouts the model had: the rows with their versions, and every tally grouped.
      const rows = await db
        .select({ rollout: rollouts, version: firmwareVersions.version })
        .from(rollouts)
        .innerJoin(firmwareVersions, eq(firmwareVersions.id, rollouts.versionId))
        .where(eq(rollouts.deviceModelId, model.id))
        .orderBy(desc(rollouts.id));
      if (rows.length === 0) return [];
      const tallies = await db
        .select({ rolloutId: rolloutDevices.rolloutId, ...tallyColumns })
        .from(rolloutDevices)
        .where(inArray(rolloutDevices.rolloutId, rows.map((row) => row.rollout.id)))
        .groupBy(rolloutDevices.rolloutId);
      const byRollout = new Map(tallies.map((tally) => [tally.rolloutId, tally]));
      return rows.map(({ rollout, version }) => toRollout(rollout, version, byRollout.get(rollout.id) ?? NO_DEVICES));
    },

    async get(model: ModelRow, id: number): Promise<RolloutDetail> {
      const row = await findRollout(db, model, id);
      const members = await db
        .select({ member: rolloutDevices, key: devices.key })
        .from(rolloutDevices)
        .innerJoin(devices, eq(devices.id, rolloutDevices.deviceId))
        .where(eq(rolloutDevices.rolloutId, id))
        .orderBy(asc(rolloutDevices.position));
      return {
        ...(await describe(db, row)),
        devices: members.map(({ member, key }) => ({
          device_id: member.deviceId,
          key,
          wave: member.wave,
          state: member.state,
          admitted_at: iso(member.admittedAt),
          settled_at: iso(member.settledAt),
          downloads: member.downloads,
          failure_reason: member.failureReason,
        })),
      };
    },

    pause: action("pause", ["running"], async (ctx, rollout) => {
      const reason = `paused by ${ctx.actor}`;
      await setState(ctx, rollout, { state: "paused", pauseReason: reason, waveDoneAt: null });
      await audited(ctx, rollout, "rollout.paused", { reason });
    }),

    resume: action("resume", ["paused"], async (ctx, rollout) => {
      const tally = await tallyOf(ctx.tx, rollout.id);
      // The failures the admin saw are accepted; only new ones pause it again.
      await setState(ctx, rollout, { state: "running", pauseReason: null, failuresAcknowledged: tally.failedHere, waveDoneAt: null });
      await audited(ctx, rollout, "rollout.resumed");
      await step(ctx, { ...rollout, state: "running", pauseReason: null, failuresAcknowledged: tally.failedHere, waveDoneAt: null });
    }),

    advance: action("advance", ["running", "paused"], (ctx, rollout) => openNextWave(ctx, rollout)),

    abort: action("abort", ["running", "paused"], (ctx, rollout) => abort(ctx, rollout, `aborted by ${ctx.actor}`)),

    /** A new rollout back to the stable version this one started from (aborting this one if it is active). */
    async revert(modelId: number, id: number, actor: Actor): Promise<Rollout> {
      return withModel(modelId, actor, async (ctx, model) => {
        const rollout = await findRollout(ctx.tx, model, id);
        if (rollout.previousVersionId === null) throw conflict(`Rollout ${id} started when the model had no stable version: there is nothing to revert to.`, "ROLLOUT_STATE");
        if (rollout.state === "running" || rollout.state === "paused") await abort(ctx, rollout, `reverted by ${actor}`);
        const current = (await lockModel(ctx.tx, model.id))!;
        const previous = await versionOf(ctx.tx, model, rollout.previousVersionId);
        const { canary_device_ids: _explicit, ...plan } = rollout.plan;
        const body: CreateRollout = { ...plan, version_id: previous.id, confirm_downgrade: true, confirm_image_change: true };
        return describe(ctx.tx, await start(ctx, current, previous, body, "revert"));
      });
    },

    /** Offers the version again to a device the rollout failed. */
    async retry(modelId: number, id: number, deviceId: number, actor: Actor): Promise<Rollout> {
      return withModel(modelId, actor, async (ctx, model) => {
        const rollout = await findRollout(ctx.tx, model, id);
        if (rollout.state === "aborted") throw conflict(`Rollout ${id} was aborted; start a new rollout to offer the version again.`, "ROLLOUT_STATE");
        const member = and(eq(rolloutDevices.rolloutId, id), eq(rolloutDevices.deviceId, deviceId));
        const [row] = await ctx.tx.select({ state: rolloutDevices.state }).from(rolloutDevices).where(member);
        if (!row) throw notFound(`Device ${deviceId} is not part of rollout ${id}.`, "DEVICE_NOT_FOUND");
        if (row.state !== "failed") throw conflict(`Device ${deviceId} has not failed rollout ${id} (it is ${row.state}).`, "ROLLOUT_STATE");
        await ctx.tx.update(rolloutDevices).set(notAdmitted).where(member);
        await audited(ctx, rollout, "rollout.device_retried", {}, deviceId);
        if (rollout.state === "completed") {
          // Its version is the stable one now: following it offers the version again.
          const [device] = await ctx.tx.update(devices).set({ rolloutVersionId: null }).where(eq(devices.id, deviceId)).returning({ clientId: devices.clientId });
          ctx.changes.push({ clientId: device!.clientId, versionId: rollout.versionId });
        }
        return describe(ctx.tx, await findRollout(ctx.tx, model, id));
      });
    },

    /**
     * After an upload: `immediate` makes it the stable version for every device at once (an active rollout is
     * superseded); `staged` starts a rollout with the default plan (superseding an active one).
     */
    async afterUpload(model: ModelRow, version: VersionRow, mode: "immediate" | "staged", confirmed: Confirmations, actor: Actor): Promise<RolloutRow | null> {
      return withModel(model.id, actor, async (ctx, locked) => {
        const active = await activeRolloutOf(ctx.tx, locked.id);
        if (active) await abort(ctx, active, `superseded by the upload of ${version.version}`);
        if (mode === "staged") return start(ctx, locked, version, { version_id: version.id, ...confirmed }, "upload");
        await ctx.tx.update(devices).set({ rolloutVersionId: null }).where(eq(devices.deviceModelId, locked.id));
        await promote(ctx, locked, version);
        const everyone = await ctx.tx.select({ clientId: devices.clientId }).from(devices).where(and(eq(devices.deviceModelId, locked.id), isNull(devices.firmwarePinVersionId)));
        ctx.changes.push(...everyone.map(({ clientId }) => ({ clientId, versionId: version.id })));
        return null;
      });
    },

    /** The upload pre-flight, before the image is recorded (so a refused upload changes nothing). */
    async check(model: ModelRow, candidate: Candidate, confirmed: Confirmations): Promise<void> {
      // The same bytes again are an existing version: a downgrade when it is older than the stable one.
      const [existing] = await db
        .select({ id: firmwareVersions.id })
        .from(firmwareVersions)
        .where(and(eq(firmwareVersions.deviceModelId, model.id), eq(firmwareVersions.version, candidate.version)));
      await preflight(db, model, { ...candidate, id: existing?.id }, confirmed);
    },

    /** Pins a device to a version of its model (null: unpins it); the pin overrides every rollout. */
    async pin(deviceId: number, versionId: number | null, actor: Actor): Promise<void> {
      const [device] = await db.select({ modelId: devices.deviceModelId }).from(devices).where(eq(devices.id, deviceId));
      if (!device) throw deviceNotFound(deviceId);
      await withModel(device.modelId, actor, async (ctx, model) => {
        if (versionId !== null) await versionOf(ctx.tx, model, versionId);
        const [row] = await ctx.tx
          .update(devices)
          .set({ firmwarePinVersionId: versionId, updatedAt: ctx.now })
          .where(eq(devices.id, deviceId))
          .returning({ clientId: devices.clientId, rolloutVersionId: devices.rolloutVersionId });
        if (!row) throw deviceNotFound(deviceId);
        // An admitted device being pinned is no longer the rollout's to watch: it waits, unpinned, for admission again.
        const [admitted] = await ctx.tx
          .update(rolloutDevices)
          .set(notAdmitted)
          .where(and(eq(rolloutDevices.deviceId, deviceId), eq(rolloutDevices.state, "admitted")))
          .returning({ previousVersionId: rolloutDevices.previousVersionId });
        // Nothing promotes during a rollout: a previous target that is the stable version means following it again.
        const given = admitted && (admitted.previousVersionId === model.stableVersionId ? null : admitted.previousVersionId);
        if (admitted) await ctx.tx.update(devices).set({ rolloutVersionId: given, rolloutId: null }).where(eq(devices.id, deviceId));
        const rolloutVersionId = admitted ? given : row.rolloutVersionId;
        await audit.record(ctx.tx, {
          actor,
          kind: versionId === null ? "firmware.unpinned" : "firmware.pinned",
          modelId: model.id,
          deviceId,
          details: versionId === null ? {} : { version_id: versionId },
        });
        ctx.changes.push({ clientId: row.clientId, versionId: versionId ?? rolloutVersionId ?? model.stableVersionId });
      });
    },

    /** One step of every active rollout; a rollout another process is stepping is left to it. Returns how many ran. */
    async tick(): Promise<number> {
      const active = await db.select({ modelId: rollouts.deviceModelId }).from(rollouts).where(inArray(rollouts.state, ["running", "paused"]));
      let stepped = 0;
      for (const { modelId } of active) {
        const changes: TargetChange[] = [];
        try {
          stepped += await db.transaction(async (tx) => {
            if (!(await lockModel(tx, modelId, true))) return 0;
            const rollout = await activeRolloutOf(tx, modelId);
            if (!rollout) return 0;
            await step(contextOf(tx, SYSTEM_ACTOR, changes), rollout);
            return 1;
          });
        } catch (error) {
          logger.error("A rollout step failed; the next tick tries again", { model_id: modelId, error: errorMessage(error) });
          continue;
        }
        await notify(changes);
      }
      return stepped;
    },
  };
}

export type RolloutService = ReturnType<typeof createRolloutService>;
