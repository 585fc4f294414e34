import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { deviceModels, devices } from "../db/schema.ts";
import { loadConfig } from "../lib/config.ts";
import { createServices, type Services } from "../lib/context.ts";
import type { DevicePrincipal } from "../lib/identity/principal.ts";
import { MQTT_TEST_URL } from "./support/server.ts";
import { enqueue } from "../lib/rotation/queue.ts";

/**
 * The embedded default (PGlite has a single connection) with the built-in provider, whose secrets live in the same
 * database: every rotation step must finish rather than wait on itself.
 */
describe("rotation on the embedded database", () => {
  let services: Services;
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "iot-embedded-rotation-"));
    services = await createServices(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent", MQTT_URL: MQTT_TEST_URL, ROTATION_TIMEOUT_SECONDS: "1" }));
  });
  after(async () => {
    await services.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** A request from the device with a token made with its secret of generation `secretGeneration`. */
  const principal = async (id: number, secretGeneration: number): Promise<DevicePrincipal> => {
    const [device] = await services.database.db.select().from(devices).where(eq(devices.id, id));
    const [model] = await services.database.db.select().from(deviceModels).where(eq(deviceModels.id, device!.deviceModelId));
    return { kind: "device", device: device!, model: model!, tokenIssuedAt: new Date(), secretGeneration, rotationCompleted: false };
  };
  const within = <T>(promise: Promise<T>) =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the step did not finish (deadlock?)")), 10_000))]);

  test("fetch, completion, retiring and an unconfirmed timeout all finish", async () => {
    const model = await services.models.create({ code: "emb", name: "Embedded" }, "test-admin");
    const device = await within(services.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin"));
    const original = await services.identity.getSecret(device.client_id);
    await enqueue(services.database.db, undefined);
    await waitForConnection(services);
    assert.equal((await within(services.rotation.engine.startNext())).started?.id, device.id);

    const issued = await within(services.rotation.engine.issueSecret(await principal(device.id, 1)));
    assert.notEqual(issued, original);
    assert.equal(await services.identity.getSecret(device.client_id), issued);
    assert.equal(await within(services.rotation.engine.acknowledge(await principal(device.id, 2))), true);

    await services.rotation.rotateDevice(device.id, "test-admin");
    const second = await within(services.rotation.engine.issueSecret(await principal(device.id, 2)));
    await services.database.db.update(devices).set({ rotationStartedAt: new Date(Date.now() - 60_000) });
    const summary = await within(services.rotation.runCycle());
    assert.equal(summary.timed_out, 1);
    assert.equal(await services.identity.getSecret(device.client_id), second, "nothing is restored: the device may hold the new secret");
    assert.equal(await within(services.rotation.engine.acknowledge(await principal(device.id, 3))), true, "completes from TIMEOUT");
  });
});

async function waitForConnection(services: Services) {
  for (let i = 0; i < 100 && services.notifier.state() !== "connected"; i++) await new Promise((resolve) => setTimeout(resolve, 50));
}
