import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { createTestDatabase } from "./support/database.ts";
import { createFleet, deviceRow, expireNow, retryNow } from "./support/fleet.ts";
import { clientCredentialsToken } from "./support/keycloak.ts";
import { createLegacyDevice } from "./support/legacy-device.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { freePort, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The built-in provider's rotation, killed with SIGKILL at each step of the provisioning fetch, the completion and the
 * timeout, with devices that behave like the deployed firmware (one secret, restart at once). After a restart on the
 * same database and enough cycles, each device is rotated, authenticates, and no token of it was ever refused.
 */
const CRASH_POINTS = [
  "identity:rotateSecret:before", // provisioning fetch: device row locked, no new secret yet
  "identity:rotateSecret:after", // new secret written in the transaction, not committed
  "response:/api/iot/provisioning", // new secret committed, the answer never sent
  "request:/api/iot/config", // the device restarted with the new secret; its first request never processed
  "identity:retirePreviousSecret:before", // completion committed, previous secret not yet retired
  "identity:retirePreviousSecret:after", // retired in the transaction, not committed
  "response:/api/iot/config", // completed and committed, the answer never sent
  "publish:rotation", // after the completion, before the next device's notice
  "expire:before", // a timeout due, with the new secret issued and not received
  "expire:after", // that timeout committed (TIMEOUT, unconfirmed)
];

describe("a backend killed at any step of a rotation locks out no device running the deployed firmware", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let controller: TestServer;
  const legacyEnv = { MQTT_LEGACY_TOPICS: "true" };
  before(async () => {
    database = await createTestDatabase();
    controller = await startTestServer({ databaseUrl: database.url, env: legacyEnv });
  });
  after(async () => {
    await controller.stop();
    await database.drop();
  });

  for (const crashAt of CRASH_POINTS) {
    test(`killed at ${crashAt}`, async () => {
      const fleet = await createFleet(controller, 2);
      const [first, second] = fleet;
      const port = await freePort();
      const baseUrl = `http://127.0.0.1:${port}`;
      const legacies = fleet.map((device) =>
        createLegacyDevice({ baseUrl: `${baseUrl}/`, tokenUrl: `${baseUrl}/oauth2/token`, clientId: device.clientId, secret: device.secret }),
      );
      const timesOut = crashAt.startsWith("expire:");
      const crashing = runEntry("test/support/crashing-server.ts", [], {
        cwd: controller.env.DATA_DIR!,
        env: bareEnv({
          ...controller.env,
          PORT: String(port),
          BASEURL: baseUrl,
          CRASH_AT: crashAt,
          // The devices' boot requests come before the rotation.
          CRASH_SKIP: crashAt.endsWith("/api/iot/config") ? String(fleet.length) : "0",
          LOG_LEVEL: "silent",
          ...(timesOut && { ROTATION_SCHEDULER: "internal", ROTATION_INTERVAL_SECONDS: "1" }),
        }),
      });
      let restarted: TestServer | null = null;
      try {
        await crashing.waitForOutput(/listening/);
        await Promise.all(legacies.map((legacy) => legacy.untilRunning()));
        if (timesOut) legacies[0]!.faults.provisioningAnswersToLose = 1;
        await controller.services.rotation.rotateDevice(first!.id, "test-admin");
        await controller.services.rotation.rotateDevice(second!.id, "test-admin");
        if (timesOut) {
          await waitFor("the new secret to be issued", async () => (await deviceRow(controller, first!.id)).newSecretIssuedAt);
          await expireNow(controller, first!.id);
        }
        assert.equal(await crashing.exited(20_000), null, "killed by a signal");
        assert.match(crashing.stdout(), new RegExp(`crashing at ${crashAt.replace(/[/]/g, "\\/")}`));
      } finally {
        crashing.kill();
      }

      try {
        restarted = await startTestServer({ databaseUrl: database.url, port, env: legacyEnv });
        await waitFor("both devices to be rotated", async () => {
          const states = await Promise.all(fleet.map(async (device) => (await deviceRow(restarted!, device.id)).rotationState));
          if (states.every((state) => state === "OK")) return true;
          await expireNow(restarted!);
          await retryNow(restarted!);
          await restarted!.services.rotation.runCycle();
          return false;
        }, 40_000, 300);
        await restarted.services.rotation.runCycle(); // retires what a crash left
        for (const [index, legacy] of legacies.entries()) {
          const device = fleet[index]!;
          assert.notEqual(legacy.secret, device.secret, `device ${index + 1} holds a new secret`);
          assert.equal((await legacy.freshToken()).ok, true, `device ${index + 1} authenticates`);
          assert.equal((await clientCredentialsToken(`${baseUrl}/oauth2/token`, device.clientId, device.secret)).ok, false, `device ${index + 1}: the old secret is retired`);
          assert.equal(legacy.lockouts, 0, `device ${index + 1}: no token was ever refused`);
        }
      } finally {
        await Promise.all(legacies.map((legacy) => legacy.stop()));
        await restarted?.stop();
        // Leave no device of this case in the way of the next one.
        await controller.services.database.db.update(devices).set({ rotationState: "OK" }).where(eq(devices.rotationState, "PENDING"));
      }
    });
  }
});
