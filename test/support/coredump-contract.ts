/**
 * What the core dump service must do, run against PostgreSQL (test/coredumps.test.ts) and the in-memory fake
 * (test/unit/fakes.test.ts): stored as sent, newest first, the newest N per device, 404 for another device's dump,
 * retention by age, crash counts per firmware version.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { CoreDumpService } from "../../lib/coredumps/service.ts";

const DAY_MS = 86_400_000;

export type CoreDumpContractSetup = {
  service: CoreDumpService;
  /** A new device (of a new model); the service was made with maxPerDevice 3 and retentionDays 30. */
  addDevice(): Promise<{ deviceId: number; modelId: number }>;
  close(): Promise<void>;
};

export function describeCoreDumpContract(name: string, open: () => Promise<CoreDumpContractSetup>) {
  describe(`core dump service contract: ${name}`, () => {
    let setup: CoreDumpContractSetup;
    before(async () => (setup = await open()));
    after(() => setup?.close());

    const dump = (deviceId: number, modelId: number, text: string, firmwareVersion: string | null = "v1") =>
      setup.service.save({ deviceId, deviceModelId: modelId, chip: "esp32s3", firmwareVersion, content: Buffer.from(text) });

    it("stores the bytes as sent, lists newest first and keeps the newest three per device", async () => {
      const { deviceId, modelId } = await setup.addDevice();
      const other = await setup.addDevice();
      const first = await dump(deviceId, modelId, "\u007fELF one");
      assert.equal(first.size, 8);
      assert.equal(first.sha256.length, 64);
      assert.deepEqual((await setup.service.get(deviceId, first.id)).content, Buffer.from("\u007fELF one"));
      for (const n of ["two", "three", "four"]) await dump(deviceId, modelId, n);
      await dump(other.deviceId, other.modelId, "other");
      const listed = await setup.service.list(deviceId);
      assert.equal(listed.length, 3);
      assert.deepEqual(listed.map((d) => d.size), [4, 5, 3]);
      await assert.rejects(setup.service.get(deviceId, first.id), /does not exist/);
      assert.equal((await setup.service.list(other.deviceId)).length, 1);
    });

    it("refuses another device's dump and deletes one at a time", async () => {
      const a = await setup.addDevice();
      const b = await setup.addDevice();
      const stored = await dump(a.deviceId, a.modelId, "a");
      await assert.rejects(setup.service.get(b.deviceId, stored.id), /does not exist/);
      await assert.rejects(setup.service.remove(b.deviceId, stored.id), /does not exist/);
      await setup.service.remove(a.deviceId, stored.id);
      assert.deepEqual(await setup.service.list(a.deviceId), []);
      await assert.rejects(setup.service.remove(a.deviceId, stored.id), /does not exist/);
    });

    it("counts crashes per firmware version of a model and deletes dumps past the retention", async () => {
      const { deviceId, modelId } = await setup.addDevice();
      await dump(deviceId, modelId, "1", "v1");
      await dump(deviceId, modelId, "2", "v2");
      await dump(deviceId, modelId, "3", null);
      assert.deepEqual(await setup.service.crashCounts(modelId, new Date(Date.now() - DAY_MS)), [
        { firmware_version: "v1", crashes: 1 },
        { firmware_version: "v2", crashes: 1 },
        { firmware_version: null, crashes: 1 },
      ]);
      assert.deepEqual(await setup.service.crashCounts(modelId, new Date(Date.now() + DAY_MS)), []);
      assert.equal(await setup.service.runRetention(new Date(Date.now() + 29 * DAY_MS)), 0);
      assert.ok((await setup.service.runRetention(new Date(Date.now() + 31 * DAY_MS))) >= 3);
      assert.deepEqual(await setup.service.list(deviceId), []);
    });
  });
}
