import { and, asc, eq, isNotNull, isNull, lte, ne, or, sql } from "drizzle-orm";
import type { Database, Executor, Transaction } from "../../db/client.ts";
import { type AuditDetails, type DeviceRow, devices, rotationQueue } from "../../db/schema.ts";
import { inTransaction } from "../transaction-scope.ts";
import { type AuditRecorder, deviceActor, SYSTEM_ACTOR } from "../audit/log.ts";
import { isUniqueViolation } from "../db-errors.ts";
import type { DevicePrincipal } from "../identity/principal.ts";
import type { IdentityProvider } from "../identity/provider.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import type { Notifier } from "../mqtt.ts";
import { type SecretBox, sameSecret } from "../secrets.ts";
import { dequeue, dropQueueRowWhilePending, rotationStateIs } from "./queue.ts";

type RotationSettings = { timeoutSeconds: number; retryBackoffSeconds: number; previousSecretGraceDays: number };

type Deps = {
  db: Database;
  identity: IdentityProvider;
  notifier: Notifier;
  secretBox: SecretBox;
  logger: Logger;
  metrics: Metrics;
  settings: RotationSettings;
  audit: AuditRecorder;
};

/** What startNext did. `notStarted` says why a device that was due could not start; null when nothing was due. */
type StartOutcome = { started: DeviceRow | null; notStarted: string | null };
/** The next device to start, and whether it waits in the queue (else it is a TIMEOUT whose retry is due). */
type Candidate = { device: DeviceRow; queued: boolean };
/** Rolls a claim back: its device left the queue while it was being claimed. */
class ClaimLost extends Error {}
const NOTHING_DUE: StartOutcome = { started: null, notStarted: null };

const MAX_BACKOFF_SECONDS = 86_400;
const DAY_MS = 86_400_000;
const ceilToSecond = (ms: number) => new Date(Math.ceil(ms / 1000) * 1000);
const sameTime = (a: Date | null, b: Date | null) => (a?.getTime() ?? null) === (b?.getTime() ?? null);
const sleepUntil = (date: Date) => new Promise((resolve) => setTimeout(resolve, Math.max(0, date.getTime() - Date.now())));

/**
 * Locks a device's row for a rotation step. FOR NO KEY UPDATE, the lock an UPDATE of the row takes: it excludes the
 * other rotation steps, but not the key-share lock with which a new queue row is checked against its device (queueing
 * the fleet would deadlock with FOR UPDATE).
 */
export const lockDevice = async (tx: Transaction, id: number) => (await tx.select().from(devices).where(eq(devices.id, id)).for("no key update"))[0];

/**
 * The rotation state machine of CONTRACT §7: OK → QUEUED → PENDING → OK, or TIMEOUT. Every step is written so that
 * a crash between any two statements leaves a device holding a secret that works.
 *
 * Deployed firmware keeps only one secret and never reads X-Rotation (CONTRACT §10): once a new secret has been
 * issued the device may hold it, so from then on no secret it might hold is invalidated until it has used one.
 * With a provider that keeps the previous secret working (keepsPreviousSecret) the new one is issued with an overlap
 * and a timeout leaves both working (TIMEOUT, unconfirmed); the next request made with the new secret completes the
 * rotation, whatever the state (Keycloak's tokens do not say which secret made them: there the backend's token
 * pass-through sees the device get a token with the new secret, proveNewSecret). A provider that cannot overlap gets
 * the older scheme: a restore point is committed before the secret changes, and a timeout restores it.
 */
export function createRotationEngine(deps: Deps) {
  const { db, identity, notifier, secretBox, logger, metrics, settings, audit } = deps;
  /** Records a transition of `device` in the trail, with the executor of the change (system unless the device caused it). */
  const recordTransition = (
    executor: Executor,
    kind: "started" | "notice_failed" | "secret_issued" | "completed" | "timed_out" | "secret_restored" | "restore_failed",
    device: Pick<DeviceRow, "id" | "deviceModelId" | "clientId">,
    details: AuditDetails = {},
    byDevice = false,
  ) =>
    audit.record(executor, {
      actor: byDevice ? deviceActor(device.clientId) : SYSTEM_ACTOR,
      kind: `rotation.${kind}`,
      deviceId: device.id,
      modelId: device.deviceModelId,
      details,
    });
  const log = (message: string, device: Pick<DeviceRow, "key" | "clientId">, fields: Record<string, unknown> = {}, to: Logger = logger) =>
    to.info(message, { device_key: device.key, client_id: device.clientId, ...fields });


  async function nextCandidate(preferId?: number): Promise<Candidate | undefined> {
    if (preferId !== undefined) {
      const [device] = await db.select().from(devices).where(and(eq(devices.id, preferId), rotationStateIs("QUEUED")));
      return device && { device, queued: true };
    }
    const [queued] = await db
      .select({ device: devices })
      .from(rotationQueue)
      .innerJoin(devices, eq(devices.id, rotationQueue.deviceId))
      .where(ne(devices.rotationState, "PENDING"))
      .orderBy(sql`${rotationQueue.secretCreatedAt} asc nulls first`, asc(rotationQueue.deviceId))
      .limit(1);
    if (queued) return { device: queued.device, queued: true };
    const [retry] = await db
      .select()
      .from(devices)
      .where(and(rotationStateIs("TIMEOUT"), or(isNull(devices.nextRetryAt), lte(devices.nextRetryAt, new Date()))))
      .orderBy(sql`${devices.nextRetryAt} asc nulls first`, asc(devices.id))
      .limit(1);
    return retry && { device: retry, queued: false };
  }

  /**
   * Starts the next device if none is PENDING. The partial unique index on PENDING rows is what makes this safe
   * between processes: a second claimer gets a unique violation and backs off (nothing was due for it). A device whose
   * earlier attempt already issued a new secret keeps it: its retry hands out that same secret again.
   */
  async function startNext(preferId?: number): Promise<StartOutcome> {
    const [pending] = await db.select({ id: devices.id }).from(devices).where(eq(devices.rotationState, "PENDING")).limit(1);
    if (pending) return NOTHING_DUE;
    const next = await nextCandidate(preferId);
    if (!next) return NOTHING_DUE;
    const { device: candidate, queued } = next;
    const shownState = queued ? "QUEUED" : candidate.rotationState;
    // Without a broker no device can learn it is PENDING: leave the queue as it is rather than churn every cycle.
    const broker = notifier.state();
    if (broker !== "connected") {
      const why = broker === "disabled" ? "no MQTT broker is configured (MQTT_URL)" : "the MQTT broker is not connected";
      return { started: null, notStarted: `device ${candidate.key} is due but was not started: ${why}; it stays ${shownState}` };
    }
    const now = new Date();
    let claimed: DeviceRow | undefined;
    try {
      claimed = await db.transaction(async (tx) => {
        const [row] = await tx
          .update(devices)
          .set({ rotationState: "PENDING", rotationStartedAt: now, lastRotationAttemptAt: now, updatedAt: now })
          .where(and(eq(devices.id, candidate.id), rotationStateIs(shownState)))
          .returning();
        if (!row) return undefined;
        // Also for a retry: a queue row written while it was being claimed would otherwise outlive the start. A queued
        // device whose row is gone completed or left meanwhile (its row's check above saw the statement's snapshot).
        if (!(await dequeue(tx, row.id)) && queued) throw new ClaimLost();
        await recordTransition(tx, "started", row, { from: shownState });
        return row;
      });
    } catch (error) {
      if (isUniqueViolation(error) || error instanceof ClaimLost) return NOTHING_DUE;
      throw error;
    }
    if (!claimed) return NOTHING_DUE;

    if (await notifier.publish("rotation", claimed.clientId, { device_key: claimed.key })) {
      log("Rotation started", claimed, { from: shownState, unconfirmed: claimed.rotationUnconfirmed });
      return { started: claimed, notStarted: null };
    }
    // Not delivered: back in the queue with nothing else changed (CONTRACT §7.2), unless the device already began
    // fetching (the PUBACK may just be late), which means the notice did arrive.
    const requeued = await db.transaction(async (tx) => {
      const row = await lockDevice(tx, claimed.id);
      const untouched =
        row?.rotationState === "PENDING" && !row.previousSecretEncrypted && sameTime(row.newSecretIssuedAt, candidate.newSecretIssuedAt);
      if (!untouched) return false;
      await tx.insert(rotationQueue).values({ deviceId: row.id, secretCreatedAt: row.secretCreatedAt }).onConflictDoNothing();
      await tx
        .update(devices)
        .set({ rotationState: candidate.rotationState, rotationStartedAt: candidate.rotationStartedAt, lastRotationAttemptAt: candidate.lastRotationAttemptAt, updatedAt: now })
        .where(eq(devices.id, row.id));
      await recordTransition(tx, "notice_failed", claimed);
      return true;
    });
    if (!requeued) return { started: claimed, notStarted: null };
    log("Rotation notice not delivered; device back in the queue", claimed, { was: shownState });
    return { started: null, notStarted: `device ${claimed.key} was not started: the broker did not acknowledge its rotation notice; it is QUEUED again` };
  }

  /**
   * GET /iot/provisioning. The first call of a rotation issues the new secret; every later call, also in a retry after
   * a timeout, returns that same secret (the provider's current one). No rotation: the current secret. `requestLog`:
   * the request's logger, so that the line saying so carries its request id.
   */
  async function issueSecret(principal: DevicePrincipal, requestLog: Logger = logger): Promise<string> {
    const { device } = principal;
    // The common case (no rotation, or the new secret exists already): no transaction, no row lock.
    if (device.rotationState !== "PENDING" || device.newSecretIssuedAt) return identity.getSecret(device.clientId);
    const issued = (await identity.keepsPreviousSecret()) ? await issueWithOverlap(device) : await issueWithRestorePoint(device);
    if (issued === null) return identity.getSecret(device.clientId);
    log("New secret issued", device, {}, requestLog);
    return issued;
  }

  /**
   * The new secret and the row that records it change in one transaction (the built-in store joins it). The previous
   * secret of the last completed rotation, if its retiring failed, goes first: the provider then keeps no previous
   * secret but one from a rotation the row never recorded (Keycloak, the backend died in between), which it hands out
   * again (IdentityProvider.rotateSecret).
   */
  async function issueWithOverlap({ id, clientId, deviceModelId }: DeviceRow): Promise<string | null> {
    return inTransaction(db, async (tx) => {
      const row = await lockDevice(tx, id);
      if (!row || row.rotationState !== "PENDING" || row.newSecretIssuedAt) return null;
      if (row.previousSecretExpiresAt) await identity.retirePreviousSecret(clientId);
      const now = new Date();
      const graceEnd = new Date(now.getTime() + settings.previousSecretGraceDays * DAY_MS);
      const { secret, generation, previousValidUntil } = await identity.rotateSecret(clientId, graceEnd);
      await tx
        .update(devices)
        .set({ newSecretIssuedAt: now, newSecretGeneration: generation, previousSecretExpiresAt: previousValidUntil, updatedAt: now })
        .where(eq(devices.id, id));
      await recordTransition(tx, "secret_issued", { id, clientId, deviceModelId }, {}, true);
      return secret;
    });
  }

  /** Stores the old secret encrypted and commits, then regenerates: a timeout can always restore the old one. */
  async function issueWithRestorePoint({ id, clientId, deviceModelId }: DeviceRow): Promise<string | null> {
    const needsNewSecret = await inTransaction(db, async (tx) => {
      const row = await lockDevice(tx, id);
      if (!row || row.rotationState !== "PENDING" || row.newSecretIssuedAt) return false;
      if (!row.previousSecretEncrypted) {
        const oldSecret = await identity.getSecret(clientId);
        await tx.update(devices).set({ previousSecretEncrypted: secretBox.encrypt(oldSecret), updatedAt: new Date() }).where(eq(devices.id, id));
      }
      return true;
    });
    if (!needsNewSecret) return null;

    const issued = await inTransaction(db, async (tx) => {
      const row = await lockDevice(tx, id);
      if (!row || row.rotationState !== "PENDING" || !row.previousSecretEncrypted || row.newSecretIssuedAt) return null;
      const secret = await identity.regenerateSecret(clientId);
      // Tokens carry whole-second `iat`s and name no secret. Any token made with the old secret predates this
      // boundary, so requiring iat >= boundary for the acknowledgement tells the two secrets apart.
      const issuedAt = ceilToSecond(Date.now());
      await tx.update(devices).set({ newSecretIssuedAt: issuedAt, updatedAt: new Date() }).where(eq(devices.id, id));
      await recordTransition(tx, "secret_issued", { id, clientId, deviceModelId }, {}, true);
      return { secret, issuedAt };
    });
    if (!issued) return null;
    await sleepUntil(issued.issuedAt);
    return issued.secret;
  }

  /**
   * Whether the device holds the secret issued in its rotation; decided from the loaded row. Tokens that name no
   * secret tell only under a restore point, where the old secret stopped working when the new one was issued; with
   * an overlap (Keycloak) only the proof recorded by proveNewSecret tells.
   */
  function usesNewSecret({ device, secretGeneration, tokenIssuedAt }: DevicePrincipal): boolean {
    if (!device.newSecretIssuedAt) return false;
    if (device.newSecretProvenAt) return true;
    if (device.newSecretGeneration !== null) return secretGeneration === device.newSecretGeneration;
    if (!device.previousSecretEncrypted) return false;
    return device.rotationState === "PENDING" && tokenIssuedAt !== null && tokenIssuedAt >= device.newSecretIssuedAt;
  }

  /**
   * The token pass-through got a token from the provider for `clientId` with `secret`. When that is the new secret of
   * the device's rotation, the device holds it: recorded, so that its next request completes the rotation (and is
   * told so, X-Rotation). The current secret is read only while a new one is issued, and kept nowhere.
   */
  async function proveNewSecret(clientId: string, secret: string): Promise<boolean> {
    const [device] = await db.select().from(devices).where(eq(devices.clientId, clientId));
    if (!device?.newSecretIssuedAt || device.newSecretProvenAt || device.previousSecretEncrypted) return false;
    if (!sameSecret(await identity.getSecret(clientId), secret)) return false;
    const [proven] = await db
      .update(devices)
      .set({ newSecretProvenAt: new Date(), updatedAt: new Date() })
      .where(and(eq(devices.id, device.id), eq(devices.newSecretIssuedAt, device.newSecretIssuedAt)))
      .returning({ id: devices.id });
    if (proven) log("Device proved it holds its new secret", device);
    return Boolean(proven);
  }

  /**
   * Any device request made with the new secret, or after the device proved it holds it, completes the rotation (also
   * after a timeout): OK, markers cleared, the previous secret retired, the next device started. A token from the old
   * secret alone never completes one.
   */
  async function acknowledge(principal: DevicePrincipal): Promise<boolean> {
    if (!usesNewSecret(principal)) return false;
    const { device } = principal;
    const now = new Date();
    const done = await db.transaction(async (tx) => {
      await dropQueueRowWhilePending(tx, device.id);
      const [row] = await tx
        .update(devices)
        .set({
          rotationState: "OK",
          secretCreatedAt: sql`${devices.newSecretIssuedAt}`,
          lastRotationCompletedAt: now,
          rotationStartedAt: null,
          previousSecretEncrypted: null,
          newSecretIssuedAt: null,
          newSecretGeneration: null,
          newSecretProvenAt: null,
          rotationUnconfirmed: false,
          rotationFailures: 0,
          nextRetryAt: null,
          rotationError: null,
          updatedAt: now,
        })
        .where(and(eq(devices.id, device.id), eq(devices.newSecretIssuedAt, device.newSecretIssuedAt!)))
        .returning();
      if (!row) return undefined;
      // A queued device that completes its earlier rotation has nothing left to wait for.
      await dequeue(tx, row.id);
      await recordTransition(tx, "completed", row, { was: device.rotationState }, true);
      return row;
    });
    if (!done) return false;
    if (device.rotationState === "PENDING" && device.rotationStartedAt) {
      metrics.rotationDuration.observe((now.getTime() - device.rotationStartedAt.getTime()) / 1000);
    }
    log("Rotation completed", done, { was: device.rotationState });
    await retirePreviousSecret(done.id).catch((error) =>
      logger.warn("Could not retire the previous secret; it expires at its grace time, and the next cycle retries", {
        device_key: done.key,
        error: errorMessage(error),
      }),
    );
    await startNext().catch((error) => logger.error("Could not start the next rotation", { error: errorMessage(error) }));
    return true;
  }

  /**
   * Ends the previous secret of a device whose rotation completed. Under the row lock and only while no new secret is
   * issued, so it can never retire the one secret a device in a later rotation still relies on.
   */
  async function retirePreviousSecret(id: number): Promise<void> {
    await inTransaction(db, async (tx) => {
      const [row] = await tx
        .select()
        .from(devices)
        .where(and(eq(devices.id, id), isNull(devices.newSecretIssuedAt), isNotNull(devices.previousSecretExpiresAt)))
        .for("update", { skipLocked: true });
      if (!row) return;
      await identity.retirePreviousSecret(row.clientId);
      await tx.update(devices).set({ previousSecretExpiresAt: null, updatedAt: new Date() }).where(eq(devices.id, id));
    });
  }

  /** The cycle's catch-up for completions whose retiring failed or was interrupted. */
  async function retireLeftoverSecrets(): Promise<number> {
    const leftovers = await db
      .select({ id: devices.id, key: devices.key })
      .from(devices)
      .where(and(isNull(devices.newSecretIssuedAt), isNotNull(devices.previousSecretExpiresAt)));
    let retired = 0;
    for (const device of leftovers) {
      try {
        await retirePreviousSecret(device.id);
        retired++;
      } catch (error) {
        logger.warn("Could not retire the previous secret; retrying next cycle", { device_key: device.key, error: errorMessage(error) });
      }
    }
    return retired;
  }

  /**
   * PENDING longer than the timeout → TIMEOUT, retried later with back-off. With an overlapping new secret nothing is
   * undone: the device may hold either secret, both work until the grace ends, and its retry hands out the same new
   * secret (unconfirmed). With a restore point the old secret is restored first.
   */
  async function expire(id: number): Promise<"expired" | "skipped"> {
    const deadline = new Date(Date.now() - settings.timeoutSeconds * 1000);
    return inTransaction(db, async (tx) => {
      const [row] = await tx.select().from(devices).where(and(eq(devices.id, id), eq(devices.rotationState, "PENDING"))).for("update", { skipLocked: true });
      if (!row || !row.rotationStartedAt || row.rotationStartedAt > deadline) return "skipped";
      await dequeue(tx, id); // while PENDING: see dropQueueRowWhilePending
      const outcome = row.previousSecretEncrypted
        ? await restorePreviousSecret(row)
        : row.newSecretIssuedAt
          ? {
              reason: `The device did not use its new secret in time. It may hold either secret; both work until ${row.previousSecretExpiresAt?.toISOString() ?? "the grace period ends"}, and its next attempt hands out the same new secret.`,
              changes: { rotationUnconfirmed: true },
            }
          : { reason: "The device did not fetch its new secret in time; its secret is unchanged.", changes: {} };
      const failures = row.rotationFailures + 1;
      const backoff = Math.min(settings.retryBackoffSeconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS);
      const now = new Date();
      const nextRetryAt = new Date(now.getTime() + backoff * 1000);
      if ("restored" in outcome && outcome.restored) await recordTransition(tx, "secret_restored", row);
      await recordTransition(tx, "timed_out", row, {
        reason: outcome.reason,
        failures,
        next_retry_at: nextRetryAt.toISOString(),
        unconfirmed: outcome.changes.rotationUnconfirmed ?? row.rotationUnconfirmed,
      });
      await tx
        .update(devices)
        .set({
          rotationState: "TIMEOUT",
          rotationStartedAt: null,
          ...outcome.changes,
          rotationFailures: failures,
          nextRetryAt,
          rotationError: outcome.reason,
          updatedAt: now,
        })
        .where(eq(devices.id, id));
      logger.warn("Rotation timed out", { device_key: row.key, client_id: row.clientId, reason: outcome.reason, retry_in_seconds: backoff });
      return "expired";
    });
  }

  /** The restore-point scheme: put the old secret back. A failure here rolls back; the next cycle tries again. */
  async function restorePreviousSecret(row: DeviceRow): Promise<{ reason: string; changes: Partial<DeviceRow>; restored: boolean }> {
    const cleared = { previousSecretEncrypted: null, newSecretIssuedAt: null, newSecretGeneration: null, previousSecretExpiresAt: null };
    let oldSecret: string;
    try {
      oldSecret = secretBox.decrypt(row.previousSecretEncrypted!);
    } catch {
      return {
        reason: "The previous secret cannot be decrypted with SECRET_ENCRYPTION_KEY (was the key changed?); the device keeps the new secret it was issued.",
        changes: { ...cleared, ...(row.newSecretIssuedAt ? { secretCreatedAt: row.newSecretIssuedAt } : {}) },
        restored: false,
      };
    }
    await identity.setSecret(row.clientId, oldSecret);
    return { reason: "The device did not acknowledge the new secret in time; its previous secret was restored.", changes: cleared, restored: true };
  }

  async function expireTimedOut(): Promise<{ expired: number; errors: string[] }> {
    const deadline = new Date(Date.now() - settings.timeoutSeconds * 1000);
    const stale = await db
      .select({ id: devices.id, key: devices.key, clientId: devices.clientId, deviceModelId: devices.deviceModelId })
      .from(devices)
      .where(and(eq(devices.rotationState, "PENDING"), lte(devices.rotationStartedAt, deadline)));
    let expired = 0;
    const errors: string[] = [];
    for (const device of stale) {
      try {
        if ((await expire(device.id)) === "expired") expired++;
      } catch (error) {
        errors.push(`device ${device.key}: could not restore its previous secret (${errorMessage(error)}); will retry`);
        logger.error("Rotation timeout could not restore the previous secret; retrying next cycle", { device_key: device.key, error: errorMessage(error) });
        await recordTransition(db, "restore_failed", device, { error: errorMessage(error) }).catch((auditError) =>
          logger.error("Could not record a failed restore in the audit trail", { device_key: device.key, error: errorMessage(auditError) }),
        );
      }
    }
    return { expired, errors };
  }

  return { startNext, issueSecret, acknowledge, proveNewSecret, expireTimedOut, retireLeftoverSecrets };
}

export type RotationEngine = ReturnType<typeof createRotationEngine>;
