/**
 * Behaviour of the rotation service the routes rely on: the real one on PostgreSQL and the fake run the same suite.
 * Each case gets fresh services (one device rotates at a time, fleet-wide).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Services } from "../../lib/context.ts";
import type { DevicePrincipal } from "../../lib/identity/principal.ts";
import { AppError } from "../../lib/errors.ts";
import { allPages } from "../../lib/paging.ts";
import { dashboardGroups } from "../../lib/rotation/dashboard.ts";
import { wholeGroup } from "./dashboard-oracle.ts";
import type { Notice } from "./fakes/notifier.ts";

/** The dashboard's counts as its route streams them: every group walked in pages of two, and whole in its chunks. */
async function dashboardCounts(rotation: Services["rotation"]) {
  const now = new Date();
  const counts: Record<string, number> = {};
  for (const group of dashboardGroups) {
    const paged: string[] = [];
    for await (const batch of allPages((after) => rotation.dashboardJsonPage(group, { after, limit: 2, now }))) paged.push(...batch);
    // Whole, as it is read before the chunks are rendered again and after.
    for (const rendered of [false, true]) {
      if (rendered) await rotation.refreshDashboard(now);
      const whole = await wholeGroup(rotation, group, now);
      assert.equal(whole.joined, paged.join(","), `${group} whole is ${group} paged${rendered ? ", its chunks rendered" : ""}`);
      assert.equal(whole.rows, paged.length);
    }
    counts[group] = paged.length;
  }
  const walked = { ...counts, unconfirmed: await rotation.unconfirmedCount() };
  assert.deepEqual(await rotation.dashboardCounts(now), walked, "the counted dashboard counts are the walked ones");
  return walked;
}

export type RotationContractSetup = () => Promise<{
  services: Pick<Services, "models" | "devices" | "rotation" | "identity">;
  notices(): Notice[];
  close(): Promise<void>;
}>;

export function describeRotationContract(name: string, setup: RotationContractSetup): void {
  describe(`Rotation service contract: ${name}`, () => {
    async function withServices(test: (env: Awaited<ReturnType<RotationContractSetup>> & { newDevice(): Promise<number> }) => Promise<void>) {
      const env = await setup();
      const model = await env.services.models.create({ code: "rot_contract", name: "Rotation contract" }, "test-admin");
      const newDevice = async () => (await env.services.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin")).id;
      try {
        await test({ ...env, newDevice });
      } finally {
        await env.close();
      }
    }
    const principal = async (services: Pick<Services, "devices">, id: number, secretGeneration: number | null): Promise<DevicePrincipal> => {
      const { device, model } = await services.devices.findWithModel(id);
      return { kind: "device", device, model, tokenIssuedAt: new Date(), secretGeneration, rotationCompleted: false };
    };
    const stateOf = async (services: Pick<Services, "devices">, id: number) => (await services.devices.get(id)).rotation_state;

    it("rotateDevice starts a device at once with a rotation notice, queues the next, and refuses an unknown one", () =>
      withServices(async ({ services, notices, newDevice }) => {
        const first = await newDevice();
        const second = await newDevice();
        const { device } = await services.devices.findWithModel(first);
        assert.equal(await services.rotation.rotateDevice(first, "test-admin"), "queued");
        assert.equal(await stateOf(services, first), "PENDING");
        assert.deepEqual(notices().filter((notice) => notice.kind === "rotation").map((notice) => [notice.clientId, notice.payload.device_key]), [[device.clientId, device.key]]);
        assert.equal(await services.rotation.rotateDevice(first, "test-admin"), "already_pending");
        assert.equal(await services.rotation.rotateDevice(second, "test-admin"), "queued");
        assert.equal(await stateOf(services, second), "QUEUED");
        const status = await services.rotation.status();
        assert.deepEqual([status.counts_by_state, status.pending_device_id], [{ OK: 0, QUEUED: 1, PENDING: 1, TIMEOUT: 0 }, first]);
        await assert.rejects(services.rotation.rotateDevice(999_999, "test-admin"), (error: unknown) => error instanceof AppError && error.code === "DEVICE_NOT_FOUND");
      }));

    it("issueSecret: a new secret on the first read while PENDING, the same one after; the current secret otherwise", () =>
      withServices(async ({ services, newDevice }) => {
        const id = await newDevice();
        const { device } = await services.devices.findWithModel(id);
        const old = await services.identity.getSecret(device.clientId);
        assert.equal(await services.rotation.engine.issueSecret(await principal(services, id, null)), old);
        await services.rotation.rotateDevice(id, "test-admin");
        const fresh = await services.rotation.engine.issueSecret(await principal(services, id, null));
        assert.notEqual(fresh, old);
        assert.equal(await services.rotation.engine.issueSecret(await principal(services, id, null)), fresh);
        assert.equal(await services.identity.getSecret(device.clientId), fresh);
      }));

    it("acknowledge: only a token of the new secret completes the rotation, and the next queued device starts", () =>
      withServices(async ({ services, newDevice }) => {
        const first = await newDevice();
        const second = await newDevice();
        await services.rotation.triggerAll("test-admin");
        const pending = (await stateOf(services, first)) === "PENDING" ? first : second;
        const next = pending === first ? second : first;
        await services.rotation.engine.issueSecret(await principal(services, pending, null));
        const { device } = await services.devices.findWithModel(pending);
        const generation = device.newSecretGeneration!;
        assert.equal(await services.rotation.engine.acknowledge(await principal(services, pending, generation - 1)), false);
        assert.equal(await stateOf(services, pending), "PENDING");
        assert.equal(await services.rotation.engine.acknowledge(await principal(services, pending, generation)), true);
        assert.equal(await stateOf(services, pending), "OK");
        assert.equal(await stateOf(services, next), "PENDING");
        assert.notEqual((await services.rotation.status()).last_rotation_completed_at, null);
      }));

    it("triggerAll queues every OK device and says how many; the dashboard counts them healthy", () =>
      withServices(async ({ services, newDevice }) => {
        await newDevice();
        await newDevice();
        await newDevice();
        assert.equal(await services.rotation.triggerAll("test-admin"), 3);
        assert.deepEqual((await services.rotation.status()).counts_by_state, { OK: 0, QUEUED: 2, PENDING: 1, TIMEOUT: 0 });
        assert.equal(await services.rotation.triggerAll("test-admin"), 0);
        assert.deepEqual(await dashboardCounts(services.rotation), { healthy: 3, warning: 0, critical: 0, unconfirmed: 0 });
      }));
  });
}
