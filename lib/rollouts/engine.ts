/**
 * The rollout state machine (docs/rollouts.md). Every step runs in one transaction holding its model's row lock, the
 * same lock an upload takes, so replicas, the CronJob and admin actions never admit a device twice or act on a
 * rollout that changed meanwhile. A crash between steps leaves the rows of the last committed step: each step
 * reads everything it decides from anew, so the next tick carries on from there.
 */
import { and, asc, count, eq, gte, inArray, isNull, lte, ne, sql } from "drizzle-orm";
import type { Transaction } from "../../db/client.ts";
import { type AuditDetails, coreDumps, deviceModels, devices, firmwareVersions, type ModelRow, rolloutDevices, type RolloutRow, rollouts } from "../../db/schema.ts";
import type { AuditKind } from "../audit/kinds.ts";
import type { Actor, AuditRecorder } from "../audit/log.ts";
import { stableCopy, type VersionRow } from "../firmware/versions.ts";
import { failuresAllowed } from "./waves.ts";
import { verdictOf } from "./verdict.ts";

/** A device whose target changed in a step: it gets a firmware notice once the step has committed. */
export type TargetChange = { clientId: string; versionId: number | null };

/** One step's transaction and what it needs around it: who acts (an admin, or the system) and the audit trail. */
export type StepContext = { tx: Transaction; now: Date; offlineAfterMs: number; changes: TargetChange[]; actor: Actor; audit: AuditRecorder };

/** Records an event of `rollout` in the audit trail, in the step's transaction. */
export const audited = (ctx: StepContext, rollout: Pick<RolloutRow, "id" | "deviceModelId">, kind: AuditKind, details: AuditDetails = {}, deviceId: number | null = null) =>
  ctx.audit.record(ctx.tx, { actor: ctx.actor, kind, modelId: rollout.deviceModelId, deviceId, details: { rollout_id: rollout.id, ...details } });

const activeStates = ["running", "paused"] as const;

export async function lockModel(tx: Transaction, modelId: number, skipLocked = false): Promise<ModelRow | null> {
  const query = tx.select().from(deviceModels).where(eq(deviceModels.id, modelId));
  const [model] = await (skipLocked ? query.for("update", { skipLocked: true }) : query.for("update"));
  return model ?? null;
}

export async function activeRolloutOf(tx: Transaction, modelId: number): Promise<RolloutRow | null> {
  const [rollout] = await tx
    .select()
    .from(rollouts)
    .where(and(eq(rollouts.deviceModelId, modelId), inArray(rollouts.state, activeStates)));
  return rollout ?? null;
}

const counted = (condition: ReturnType<typeof sql>) => sql<number>`count(*) filter (where ${condition})`.mapWith(Number);

/** A rollout's devices counted by state (select these from rollout_devices, grouped by rollout or for one). */
export const tallyColumns = {
  total: count(),
  pending: counted(sql`${rolloutDevices.state} = 'pending'`),
  admitted: counted(sql`${rolloutDevices.state} = 'admitted'`),
  succeeded: counted(sql`${rolloutDevices.state} = 'succeeded'`),
  failed: counted(sql`${rolloutDevices.state} = 'failed'`),
  // Failures carried over from an earlier rollout of the version were never admitted: they do not pause this one.
  failedHere: counted(sql`${rolloutDevices.state} = 'failed' and ${rolloutDevices.admittedAt} is not null`),
  canaries: counted(sql`${rolloutDevices.wave} = 0`),
  canariesSucceeded: counted(sql`${rolloutDevices.wave} = 0 and ${rolloutDevices.state} = 'succeeded'`),
};

export async function tallyOf(tx: Transaction, rolloutId: number) {
  const [tally] = await tx.select(tallyColumns).from(rolloutDevices).where(eq(rolloutDevices.rolloutId, rolloutId));
  return tally!;
}

export type Tally = Awaited<ReturnType<typeof tallyOf>>;

/** Makes `version` the model's stable version (what every device without a pin or rollout version then runs). */
export async function promote(ctx: StepContext, model: Pick<ModelRow, "id" | "stableVersionId">, version: VersionRow): Promise<void> {
  await ctx.tx.update(deviceModels).set(stableCopy(version)).where(eq(deviceModels.id, model.id));
  await ctx.audit.record(ctx.tx, {
    actor: ctx.actor,
    kind: "firmware.stable_changed",
    modelId: model.id,
    details: { version: version.version, version_id: version.id, previous_version_id: model.stableVersionId },
  });
}

/** Gives a device back the target it had before the rollout admitted it, and stops watching it. */
async function giveBack(ctx: StepContext, deviceId: number, previousVersionId: number | null): Promise<void> {
  const [row] = await ctx.tx
    .update(devices)
    .set({ rolloutVersionId: previousVersionId, rolloutId: null })
    .where(eq(devices.id, deviceId))
    .returning({ clientId: devices.clientId });
  if (row) ctx.changes.push({ clientId: row.clientId, versionId: previousVersionId });
}

/** Decides every admitted or succeeded device from what was seen of it (./verdict.ts). */
async function judge(ctx: StepContext, rollout: RolloutRow, target: string): Promise<void> {
  const watched = await ctx.tx
    .select({
      deviceId: rolloutDevices.deviceId,
      state: rolloutDevices.state,
      previousVersionId: rolloutDevices.previousVersionId,
      admittedAt: rolloutDevices.admittedAt,
      firstDownloadAt: rolloutDevices.firstDownloadAt,
      lastDownloadAt: rolloutDevices.lastDownloadAt,
      downloads: rolloutDevices.downloads,
      restartsAfterDownload: rolloutDevices.restartsAfterDownload,
      configAt: rolloutDevices.configAt,
      lastSeenAt: devices.lastSeenAt,
      reportedFirmwareVersion: devices.reportedFirmwareVersion,
      reportedAt: devices.reportedAt,
      otaState: devices.otaState,
      lastStateReport: devices.lastStateReport,
      crashed: sql<boolean>`exists (select 1 from ${coreDumps} where ${coreDumps.deviceId} = ${rolloutDevices.deviceId}
        and ${coreDumps.firmwareVersion} = ${target} and ${coreDumps.receivedAt} >= ${rolloutDevices.admittedAt})`,
    })
    .from(rolloutDevices)
    .innerJoin(devices, eq(devices.id, rolloutDevices.deviceId))
    .where(and(eq(rolloutDevices.rolloutId, rollout.id), inArray(rolloutDevices.state, ["admitted", "succeeded"])));
  const member = (deviceId: number) => and(eq(rolloutDevices.rolloutId, rollout.id), eq(rolloutDevices.deviceId, deviceId));
  for (const device of watched) {
    const verdict = verdictOf(device, target, ctx.now, rollout.plan.wave_timeout_seconds * 1000);
    if (verdict === null) continue;
    if (verdict.state === "succeeded") {
      await ctx.tx.update(rolloutDevices).set({ state: "succeeded", settledAt: ctx.now }).where(member(device.deviceId));
      await audited(ctx, rollout, "rollout.device_succeeded", { version: target }, device.deviceId);
    } else if (verdict.state === "failed") {
      await ctx.tx.update(rolloutDevices).set({ state: "failed", settledAt: ctx.now, failureReason: verdict.reason }).where(member(device.deviceId));
      await giveBack(ctx, device.deviceId, device.previousVersionId);
      await audited(ctx, rollout, "rollout.device_failed", { version: target, reason: verdict.reason }, device.deviceId);
    } else {
      await ctx.tx.update(rolloutDevices).set(notAdmitted).where(member(device.deviceId));
      await giveBack(ctx, device.deviceId, device.previousVersionId);
    }
  }
}

/** A rollout device back to waiting, with nothing seen. */
export const notAdmitted = {
  state: "pending" as const,
  admittedAt: null,
  firstDownloadAt: null,
  lastDownloadAt: null,
  downloads: 0,
  restartsAfterDownload: 0,
  configAt: null,
  settledAt: null,
  failureReason: null,
};

/** Pending devices of the open waves that may be admitted now: not pinned, not in a credential rotation, recently seen. */
function admissible(ctx: StepContext, rollout: RolloutRow) {
  return and(
    eq(rolloutDevices.rolloutId, rollout.id),
    eq(rolloutDevices.state, "pending"),
    lte(rolloutDevices.wave, rollout.currentWave),
    isNull(devices.firmwarePinVersionId),
    ne(devices.rotationState, "PENDING"),
    gte(devices.lastSeenAt, new Date(ctx.now.getTime() - ctx.offlineAfterMs)),
  );
}

/** Admits up to the free slots of max_concurrent; returns whether admissible devices are left waiting. */
async function admit(ctx: StepContext, rollout: RolloutRow, slots: number): Promise<boolean> {
  const candidates = await ctx.tx
    .select({ deviceId: rolloutDevices.deviceId, clientId: devices.clientId, rolloutVersionId: devices.rolloutVersionId })
    .from(rolloutDevices)
    .innerJoin(devices, eq(devices.id, rolloutDevices.deviceId))
    .where(admissible(ctx, rollout))
    .orderBy(asc(rolloutDevices.wave), asc(rolloutDevices.position))
    .limit(slots + 1)
    .for("update", { of: devices });
  for (const candidate of candidates.slice(0, slots)) {
    await ctx.tx
      .update(rolloutDevices)
      // Its target until now, spelled out: a device that fails keeps it even once the version becomes stable.
      .set({ ...notAdmitted, state: "admitted", admittedAt: ctx.now, previousVersionId: candidate.rolloutVersionId ?? rollout.previousVersionId })
      .where(and(eq(rolloutDevices.rolloutId, rollout.id), eq(rolloutDevices.deviceId, candidate.deviceId)));
    await ctx.tx.update(devices).set({ rolloutVersionId: rollout.versionId, rolloutId: rollout.id }).where(eq(devices.id, candidate.deviceId));
    ctx.changes.push({ clientId: candidate.clientId, versionId: rollout.versionId });
  }
  return candidates.length > slots;
}

/** Completes the rollout: its version becomes stable, every device not failed follows it. */
export async function complete(ctx: StepContext, rollout: RolloutRow): Promise<void> {
  const [version] = await ctx.tx.select().from(firmwareVersions).where(eq(firmwareVersions.id, rollout.versionId));
  await promote(ctx, { id: rollout.deviceModelId, stableVersionId: rollout.previousVersionId }, version!);
  const notFailed = ctx.tx
    .select({ id: rolloutDevices.deviceId })
    .from(rolloutDevices)
    .where(and(eq(rolloutDevices.rolloutId, rollout.id), ne(rolloutDevices.state, "failed")));
  await ctx.tx.update(devices).set({ rolloutVersionId: null }).where(inArray(devices.id, notFailed));
  await ctx.tx.update(devices).set({ rolloutId: null }).where(eq(devices.rolloutId, rollout.id));
  await ctx.tx
    .update(rollouts)
    .set({ state: "completed", completedAt: ctx.now, waveDoneAt: null, pauseReason: null, updatedAt: ctx.now })
    .where(eq(rollouts.id, rollout.id));
  await audited(ctx, rollout, "rollout.completed", { version: version!.version });
}

/** Opens the next wave now (or completes after the last). */
export async function openNextWave(ctx: StepContext, rollout: RolloutRow): Promise<void> {
  if (rollout.currentWave >= rollout.plan.waves.length) return complete(ctx, rollout);
  await ctx.tx
    .update(rollouts)
    .set({ currentWave: rollout.currentWave + 1, waveStartedAt: ctx.now, waveDoneAt: null, updatedAt: ctx.now })
    .where(eq(rollouts.id, rollout.id));
  await audited(ctx, rollout, "rollout.wave_opened", { wave: rollout.currentWave + 1 });
}

/** Stops the rollout: devices admitted and not yet proven get their previous target back; the others keep theirs. */
export async function abort(ctx: StepContext, rollout: RolloutRow, reason: string): Promise<void> {
  const inFlight = await ctx.tx
    .select({ deviceId: rolloutDevices.deviceId, previousVersionId: rolloutDevices.previousVersionId })
    .from(rolloutDevices)
    .where(and(eq(rolloutDevices.rolloutId, rollout.id), eq(rolloutDevices.state, "admitted")));
  for (const device of inFlight) {
    // The stable version has not changed (nothing promotes during a rollout): back to following it.
    await giveBack(ctx, device.deviceId, device.previousVersionId === rollout.previousVersionId ? null : device.previousVersionId);
    await ctx.tx.update(rolloutDevices).set(notAdmitted).where(and(eq(rolloutDevices.rolloutId, rollout.id), eq(rolloutDevices.deviceId, device.deviceId)));
  }
  await ctx.tx.update(devices).set({ rolloutId: null }).where(eq(devices.rolloutId, rollout.id));
  await ctx.tx.update(rollouts).set({ state: "aborted", pauseReason: reason, completedAt: ctx.now, updatedAt: ctx.now }).where(eq(rollouts.id, rollout.id));
  await audited(ctx, rollout, "rollout.aborted", { reason });
}

/** Why the failures so far pause the rollout, or null. */
function pauseReasonFor(rollout: RolloutRow, tally: Tally): string | null {
  const fresh = tally.failedHere - rollout.failuresAcknowledged;
  if (fresh <= 0) return null;
  if (rollout.currentWave === 0) return "a canary device failed";
  const allowed = failuresAllowed(rollout.plan, tally.total);
  return fresh > allowed ? `${fresh} devices failed, more than the ${Number(allowed.toFixed(2))} the plan allows` : null;
}

/**
 * One step of a rollout: judge its devices, pause on failures, admit devices up to max_concurrent, and open the next
 * wave once the open one has nothing left to do and has soaked (or complete after the last).
 */
export async function step(ctx: StepContext, rollout: RolloutRow): Promise<void> {
  const [version] = await ctx.tx.select({ version: firmwareVersions.version }).from(firmwareVersions).where(eq(firmwareVersions.id, rollout.versionId));
  await judge(ctx, rollout, version!.version);
  const tally = await tallyOf(ctx.tx, rollout.id);
  // Retried failures leave the count: what was acknowledged cannot exceed what is left.
  const failuresAcknowledged = Math.min(rollout.failuresAcknowledged, tally.failedHere);
  const current = { ...rollout, failuresAcknowledged };
  const pauseReason = rollout.state === "running" ? pauseReasonFor(current, tally) : null;
  if (rollout.state !== "running" || pauseReason !== null) {
    await ctx.tx
      .update(rollouts)
      .set({ failuresAcknowledged, ...(pauseReason !== null && { state: "paused", pauseReason, waveDoneAt: null }), updatedAt: ctx.now })
      .where(eq(rollouts.id, rollout.id));
    if (pauseReason !== null) await audited(ctx, rollout, "rollout.paused", { reason: pauseReason });
    return;
  }
  const slots = Math.max(0, rollout.plan.max_concurrent - tally.admitted);
  const admittedBefore = ctx.changes.length;
  const waiting = (await admit(ctx, current, slots)) || (slots === 0 && (await hasAdmissible(ctx, current)));
  const inFlight = tally.admitted + (ctx.changes.length - admittedBefore);
  // The canary must prove the image: a canary wave with no success yet (its devices offline) does not finish.
  const canaryUnproven = rollout.currentWave === 0 && tally.canaries > 0 && tally.canariesSucceeded === 0;
  const waveDone = inFlight === 0 && !waiting && !canaryUnproven;
  // No canary (canary_count 0): there is nothing to soak; the first wave opens at once.
  const noCanary = rollout.currentWave === 0 && tally.canaries === 0;
  const soaked = rollout.waveDoneAt !== null && ctx.now.getTime() - rollout.waveDoneAt.getTime() >= rollout.plan.soak_seconds * 1000;
  if (waveDone && (noCanary || soaked)) {
    return openNextWave(ctx, current);
  }
  const waveDoneAt = waveDone ? (rollout.waveDoneAt ?? ctx.now) : null;
  await ctx.tx.update(rollouts).set({ failuresAcknowledged, waveDoneAt, updatedAt: ctx.now }).where(eq(rollouts.id, rollout.id));
  // With no soak time a finished wave opens the next at once.
  if (waveDone && rollout.plan.soak_seconds === 0 && rollout.waveDoneAt === null) await openNextWave(ctx, { ...current, waveDoneAt });
}

async function hasAdmissible(ctx: StepContext, rollout: RolloutRow): Promise<boolean> {
  const [row] = await ctx.tx
    .select({ deviceId: rolloutDevices.deviceId })
    .from(rolloutDevices)
    .innerJoin(devices, eq(devices.id, rolloutDevices.deviceId))
    .where(admissible(ctx, rollout))
    .limit(1);
  return row !== undefined;
}
