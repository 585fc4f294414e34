import { and, asc, eq, isNull, lte, or, sql } from "drizzle-orm";
import type { Database, Transaction } from "../../db/client.ts";
import { devices } from "../../db/schema.ts";
import { inTransaction } from "../../db/transaction-scope.ts";
import { isUniqueViolation } from "../db-errors.ts";
import type { DeviceRow } from "../devices.ts";
import type { DevicePrincipal } from "../http/auth.ts";
import type { IdentityProvider } from "../identity/provider.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import type { Notifier } from "../mqtt.ts";
import type { SecretBox } from "../secrets.ts";

type RotationSettings = { timeoutSeconds: number; retryBackoffSeconds: number };

type Deps = {
  db: Database;
  identity: IdentityProvider;
  notifier: Notifier;
  secretBox: SecretBox;
  logger: Logger;
  metrics: Metrics;
  settings: RotationSettings;
};

/** What startNext did. `notStarted` says why a device that was due could not start; null when nothing was due. */
export type StartOutcome = { started: DeviceRow | null; notStarted: string | null };
const NOTHING_DUE: StartOutcome = { started: null, notStarted: null };

const MAX_BACKOFF_SECONDS = 86_400;
const ceilToSecond = (ms: number) => new Date(Math.ceil(ms / 1000) * 1000);
const sleepUntil = (date: Date) => new Promise((resolve) => setTimeout(resolve, Math.max(0, date.getTime() - Date.now())));

/**
 * The rotation state machine of CONTRACT §7: OK → QUEUED → PENDING → OK, or TIMEOUT. Every step is written so
 * that a crash between any two statements leaves a device that ends in OK or TIMEOUT with a working secret:
 * the old secret is committed (encrypted) before the identity provider regenerates, and a timeout restores it.
 */
export function createRotationEngine(deps: Deps) {
  const { db, identity, notifier, secretBox, logger, metrics, settings } = deps;
  const log = (message: string, device: Pick<DeviceRow, "key" | "clientId">, fields: Record<string, unknown> = {}) =>
    logger.info(message, { device_key: device.key, client_id: device.clientId, ...fields });

  const lockDevice = async (tx: Transaction, id: number) =>
    (await tx.select().from(devices).where(eq(devices.id, id)).for("update"))[0];

  async function nextCandidate(preferId?: number): Promise<DeviceRow | undefined> {
    if (preferId !== undefined) {
      return (await db.select().from(devices).where(and(eq(devices.id, preferId), eq(devices.rotationState, "QUEUED"))))[0];
    }
    const [queued] = await db
      .select()
      .from(devices)
      .where(eq(devices.rotationState, "QUEUED"))
      .orderBy(sql`${devices.secretCreatedAt} asc nulls first`, asc(devices.id))
      .limit(1);
    if (queued) return queued;
    const [retry] = await db
      .select()
      .from(devices)
      .where(and(eq(devices.rotationState, "TIMEOUT"), or(isNull(devices.nextRetryAt), lte(devices.nextRetryAt, new Date()))))
      .orderBy(sql`${devices.nextRetryAt} asc nulls first`, asc(devices.id))
      .limit(1);
    return retry;
  }

  /**
   * Starts the next device if none is PENDING. The partial unique index on PENDING rows is what makes this safe
   * between processes: a second claimer gets a unique violation and backs off (nothing was due for it).
   */
  async function startNext(preferId?: number): Promise<StartOutcome> {
    const [pending] = await db.select({ id: devices.id }).from(devices).where(eq(devices.rotationState, "PENDING")).limit(1);
    if (pending) return NOTHING_DUE;
    const candidate = await nextCandidate(preferId);
    if (!candidate) return NOTHING_DUE;
    // Without a broker no device can learn it is PENDING: leave the queue as it is rather than churn every cycle.
    const broker = notifier.state();
    if (broker !== "connected") {
      const why = broker === "disabled" ? "no MQTT broker is configured (MQTT_URL)" : "the MQTT broker is not connected";
      return { started: null, notStarted: `device ${candidate.key} is due but was not started: ${why}; it stays ${candidate.rotationState}` };
    }
    const now = new Date();
    let claimed: DeviceRow | undefined;
    try {
      [claimed] = await db
        .update(devices)
        .set({ rotationState: "PENDING", rotationStartedAt: now, lastRotationAttemptAt: now, previousSecretEncrypted: null, newSecretIssuedAt: null, updatedAt: now })
        .where(and(eq(devices.id, candidate.id), eq(devices.rotationState, candidate.rotationState)))
        .returning();
    } catch (error) {
      if (isUniqueViolation(error)) return NOTHING_DUE;
      throw error;
    }
    if (!claimed) return NOTHING_DUE;

    if (await notifier.publish("rotation", claimed.clientId, { device_key: claimed.key })) {
      log("Rotation started", claimed, { from: candidate.rotationState });
      return { started: claimed, notStarted: null };
    }
    // Not delivered: back to QUEUED with nothing else changed (CONTRACT §7.2), unless the device already began
    // fetching (the PUBACK may just be late), which means the notice did arrive.
    const [requeued] = await db
      .update(devices)
      .set({ rotationState: "QUEUED", rotationStartedAt: candidate.rotationStartedAt, lastRotationAttemptAt: candidate.lastRotationAttemptAt, updatedAt: now })
      .where(and(eq(devices.id, claimed.id), eq(devices.rotationState, "PENDING"), isNull(devices.previousSecretEncrypted)))
      .returning({ id: devices.id });
    if (!requeued) return { started: claimed, notStarted: null };
    log("Rotation notice not delivered; device back in the queue", claimed, { was: candidate.rotationState });
    return { started: null, notStarted: `device ${claimed.key} was not started: the broker did not acknowledge its rotation notice; it is QUEUED again` };
  }

  /**
   * GET /iot/provisioning during a rotation. First call: store the old secret encrypted and commit, then regenerate.
   * Later calls in the same rotation return the secret already issued. No rotation: the current secret.
   */
  async function issueSecret(principal: DevicePrincipal): Promise<string> {
    const { id, clientId, rotationState } = principal.device;
    // The common case, no rotation: no transaction, no row lock.
    if (rotationState !== "PENDING") return identity.getSecret(clientId);
    const needsNewSecret = await inTransaction(db, async (tx) => {
      const row = await lockDevice(tx, id);
      if (!row || row.rotationState !== "PENDING" || row.newSecretIssuedAt) return false;
      if (!row.previousSecretEncrypted) {
        const oldSecret = await identity.getSecret(clientId);
        await tx.update(devices).set({ previousSecretEncrypted: secretBox.encrypt(oldSecret), updatedAt: new Date() }).where(eq(devices.id, id));
      }
      return true;
    });
    if (!needsNewSecret) return identity.getSecret(clientId);

    const issued = await inTransaction(db, async (tx) => {
      const row = await lockDevice(tx, id);
      if (!row || row.rotationState !== "PENDING" || !row.previousSecretEncrypted || row.newSecretIssuedAt) return null;
      const secret = await identity.regenerateSecret(clientId);
      // Tokens carry whole-second `iat`s. Any token made with the old secret predates this boundary, so requiring
      // iat >= boundary for the acknowledgement tells the two secrets apart.
      const issuedAt = ceilToSecond(Date.now());
      await tx.update(devices).set({ newSecretIssuedAt: issuedAt, updatedAt: new Date() }).where(eq(devices.id, id));
      return { secret, issuedAt };
    });
    if (!issued) return identity.getSecret(clientId);
    log("New secret issued", principal.device);
    await sleepUntil(issued.issuedAt);
    return issued.secret;
  }

  /** GET /iot/config: completes the rotation when the token was issued after the new secret existed. */
  async function acknowledge(principal: DevicePrincipal): Promise<boolean> {
    const { device, tokenIssuedAt } = principal;
    if (device.rotationState !== "PENDING" || !tokenIssuedAt) return false;
    const now = new Date();
    const [done] = await db
      .update(devices)
      .set({
        rotationState: "OK",
        secretCreatedAt: sql`${devices.newSecretIssuedAt}`,
        lastRotationCompletedAt: now,
        rotationStartedAt: null,
        previousSecretEncrypted: null,
        newSecretIssuedAt: null,
        rotationFailures: 0,
        nextRetryAt: null,
        rotationError: null,
        updatedAt: now,
      })
      .where(and(eq(devices.id, device.id), eq(devices.rotationState, "PENDING"), lte(devices.newSecretIssuedAt, tokenIssuedAt)))
      .returning();
    if (!done) return false;
    if (device.rotationStartedAt) metrics.rotationDuration.observe((now.getTime() - device.rotationStartedAt.getTime()) / 1000);
    log("Rotation completed", done);
    await startNext().catch((error) => logger.error("Could not start the next rotation", { error: errorMessage(error) }));
    return true;
  }

  /** PENDING longer than the timeout: restore the old secret if a new one may have been issued, then TIMEOUT. */
  async function expire(id: number): Promise<"expired" | "skipped"> {
    const deadline = new Date(Date.now() - settings.timeoutSeconds * 1000);
    return inTransaction(db, async (tx) => {
      const [row] = await tx.select().from(devices).where(and(eq(devices.id, id), eq(devices.rotationState, "PENDING"))).for("update", { skipLocked: true });
      if (!row || !row.rotationStartedAt || row.rotationStartedAt > deadline) return "skipped";
      let reason = "The device did not fetch its new secret in time; its secret is unchanged.";
      let keptNewSecret = false;
      if (row.previousSecretEncrypted) {
        let oldSecret: string | null = null;
        try {
          oldSecret = secretBox.decrypt(row.previousSecretEncrypted);
        } catch {
          keptNewSecret = true;
          reason = "The previous secret cannot be decrypted with SECRET_ENCRYPTION_KEY (was the key changed?); the device keeps the new secret it was issued.";
        }
        // A failure here rolls back: the device stays PENDING and the next cycle tries again.
        if (oldSecret !== null) await identity.setSecret(row.clientId, oldSecret);
        if (oldSecret !== null) reason = "The device did not acknowledge the new secret in time; its previous secret was restored.";
      }
      const failures = row.rotationFailures + 1;
      const backoff = Math.min(settings.retryBackoffSeconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS);
      const now = new Date();
      await tx
        .update(devices)
        .set({
          rotationState: "TIMEOUT",
          rotationStartedAt: null,
          previousSecretEncrypted: null,
          newSecretIssuedAt: null,
          ...(keptNewSecret && row.newSecretIssuedAt ? { secretCreatedAt: row.newSecretIssuedAt } : {}),
          rotationFailures: failures,
          nextRetryAt: new Date(now.getTime() + backoff * 1000),
          rotationError: reason,
          updatedAt: now,
        })
        .where(eq(devices.id, id));
      logger.warn("Rotation timed out", { device_key: row.key, client_id: row.clientId, reason, retry_in_seconds: backoff });
      return "expired";
    });
  }

  async function expireTimedOut(): Promise<{ expired: number; errors: string[] }> {
    const deadline = new Date(Date.now() - settings.timeoutSeconds * 1000);
    const stale = await db
      .select({ id: devices.id, key: devices.key })
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
      }
    }
    return { expired, errors };
  }

  return { startNext, issueSecret, acknowledge, expireTimedOut };
}

export type RotationEngine = ReturnType<typeof createRotationEngine>;
