/**
 * RotationService and its engine over the shared rows: one device PENDING at a time, a rotation notice on start, the
 * new secret issued on the first provisioning read and kept through its grace, completed by a token of the new secret.
 */
import type { IdentityProvider } from "../../../lib/identity/provider.ts";
import { deviceNotFound } from "../../../lib/errors.ts";
import type { Notifier } from "../../../lib/mqtt.ts";
import type { RotationEngine } from "../../../lib/rotation/engine.ts";
import { nextOccurrence, type Schedule } from "../../../lib/rotation/schedule.ts";
import type { DashboardGroup } from "../../../lib/rotation/dashboard.ts";
import type { RotationService } from "../../../lib/rotation/service.ts";
import { dashboardGroupOf, toDashboardRow } from "../dashboard-oracle.ts";
import { toPage } from "../../../lib/paging.ts";
import { rotationStates } from "../../../db/schema.ts";
import type { RotationStatus } from "../../../lib/schemas.ts";
import type { FakeWorld } from "./world.ts";

const DAY_MS = 86_400_000;

export function fakeRotationService(
  world: FakeWorld,
  deps: { identity: IdentityProvider; notifier: Notifier; schedule: Schedule; criticalThresholdDays: number; previousSecretGraceDays: number },
): RotationService {
  const rows = () => [...world.devices.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  const pending = () => rows().find((row) => row.rotationState === "PENDING") ?? null;

  const engine: RotationEngine = {
    async startNext(preferId) {
      if (pending()) return { started: null, notStarted: null };
      const queued = rows().filter((row) => row.rotationState === "QUEUED");
      const device = queued.find((row) => row.id === preferId) ?? queued[0];
      if (!device) return { started: null, notStarted: null };
      Object.assign(device, { rotationState: "PENDING", rotationStartedAt: new Date(), lastRotationAttemptAt: new Date() });
      if (await deps.notifier.publish("rotation", device.clientId, { device_key: device.key })) return { started: device, notStarted: null };
      device.rotationState = "QUEUED";
      return { started: null, notStarted: `The rotation notice to ${device.key} was not delivered.` };
    },
    async issueSecret({ device: { id } }) {
      const device = world.devices.get(id);
      if (!device) throw deviceNotFound(id);
      if (device.rotationState !== "PENDING" || device.newSecretIssuedAt) return deps.identity.getSecret(device.clientId);
      const previousSecretExpiresAt = new Date(Date.now() + deps.previousSecretGraceDays * DAY_MS);
      const { secret, generation } = await deps.identity.rotateSecret(device.clientId, previousSecretExpiresAt);
      Object.assign(device, { newSecretIssuedAt: new Date(), newSecretGeneration: generation, previousSecretExpiresAt });
      return secret;
    },
    async acknowledge({ device: { id }, secretGeneration }) {
      const device = world.devices.get(id);
      if (!device?.newSecretIssuedAt || secretGeneration !== device.newSecretGeneration) return false;
      Object.assign(device, {
        rotationState: "OK",
        lastRotationCompletedAt: new Date(),
        newSecretIssuedAt: null,
        newSecretGeneration: null,
        rotationUnconfirmed: false,
        previousSecretExpiresAt: null,
      });
      await deps.identity.retirePreviousSecret(device.clientId);
      await engine.startNext();
      return true;
    },
    // Only the Keycloak token pass-through calls it; the fakes are the built-in provider.
    proveNewSecret: async () => false,
    expireTimedOut: async () => ({ expired: 0, errors: [] }),
    retireLeftoverSecrets: async () => 0,
  };

  const countsByState = async () =>
    Object.fromEntries(rotationStates.map((state) => [state, rows().filter((row) => row.rotationState === state).length])) as RotationStatus["counts_by_state"];
  const unconfirmedCount = async () => rows().filter((row) => row.rotationUnconfirmed).length;

  /** A dashboard group's rows at `now`, by key. */
  const groupRows = (group: DashboardGroup, now: Date) =>
    rows()
      .map((device) =>
        toDashboardRow(
          {
            id: device.id,
            key: device.key,
            device_name: device.deviceName,
            device_model_code: world.models.get(device.deviceModelId)!.code,
            rotation_state: device.rotationState,
            rotation_unconfirmed: device.rotationUnconfirmed,
            completed: device.lastRotationCompletedAt,
          },
          now,
        ),
      )
      .filter((row) => dashboardGroupOf(row, deps.criticalThresholdDays) === group);

  return {
    engine,
    issueProvisioningSecret: engine.issueSecret,
    async runCycle() {
      const { started } = await engine.startNext();
      return { baseline_recorded: false, queued: 0, timed_out: 0, retired_previous_secrets: 0, started: started?.key ?? null, pending: pending()?.key ?? null, errors: [] };
    },
    async triggerAll() {
      const ok = rows().filter((row) => row.rotationState === "OK");
      for (const row of ok) row.rotationState = "QUEUED";
      await engine.startNext();
      return ok.length;
    },
    async rotateDevice(id) {
      const device = world.devices.get(id);
      if (!device) throw deviceNotFound(id);
      if (device.rotationState === "PENDING") return "already_pending";
      if (device.rotationState === "OK" || device.rotationState === "TIMEOUT") Object.assign(device, { rotationState: "QUEUED", nextRetryAt: null });
      await engine.startNext(id);
      return "queued";
    },
    countsByState,
    unconfirmedCount,
    async dashboardCounts(now) {
      const counts = { healthy: 0, warning: 0, critical: 0, unconfirmed: await unconfirmedCount() };
      for (const device of rows()) {
        const completed = device.lastRotationCompletedAt;
        const days = completed ? Math.floor((now.getTime() - completed.getTime()) / 86_400_000) : null;
        counts[dashboardGroupOf({ rotation_state: device.rotationState, days_since_rotation: days }, deps.criticalThresholdDays)]++;
      }
      return counts;
    },
    async status() {
      const completed = rows().flatMap((row) => (row.lastRotationCompletedAt ? [row.lastRotationCompletedAt.getTime()] : []));
      return {
        counts_by_state: await countsByState(),
        unconfirmed_count: await unconfirmedCount(),
        pending_device_id: pending()?.id ?? null,
        last_rotation_completed_at: completed.length ? new Date(Math.max(...completed)).toISOString() : null,
        next_scheduled_rotation: nextOccurrence(deps.schedule, new Date()).toISOString(),
      };
    },
    async dashboardJsonPage(group, { after, limit, now }) {
      const inGroup = groupRows(group, now).filter((row) => after === undefined || row.key > after);
      const page = toPage(inGroup.slice(0, limit + 1), limit, (row) => row.key);
      return { items: page.items.map((row) => JSON.stringify(row)), next: page.next };
    },
    // A chunk per key prefix, as the real one keeps them; nothing is kept here, so there is nothing to render.
    async *dashboardJsonChunks(group, now) {
      const byPrefix = new Map<string, string[]>();
      for (const row of groupRows(group, now)) byPrefix.set(row.key.slice(0, 2), [...(byPrefix.get(row.key.slice(0, 2)) ?? []), JSON.stringify(row)]);
      const chunks = [...byPrefix.values()].map((texts) => ({ text: texts.join(","), rows: texts.length }));
      if (chunks.length > 0) yield chunks;
    },
    refreshDashboard: async () => 0,
  };
}
