import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { createTestDatabase } from "./support/database.ts";
import { createFleet, deviceRow, expireNow } from "./support/fleet.ts";
import { requireKeycloak } from "./support/keycloak.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { freePort, keycloakEnv, startTestServer, type TestServer } from "./support/server.ts";
import { createSimulatedDevice } from "./support/simulated-device.ts";
import { waitFor } from "./support/wait.ts";

/**
 * The backend is killed with SIGKILL between each pair of steps of the provisioning fetch, the proof at the token
 * pass-through and the completion (Keycloak with its secret-rotation policy).
 * After a restart and the next rotation job, each device must end OK or TIMEOUT holding a secret that works.
 */
const CRASH_POINTS = [
  "identity:rotateSecret:before", // provisioning fetch: the new secret not yet made
  "identity:rotateSecret:after", // made in Keycloak, not yet recorded: the retry hands it out again, never rotates twice
  "response:/iot/provisioning", // recorded and committed, response never sent
  "identity:getSecret:before", // token pass-through: Keycloak granted a token for the new secret, not yet compared
  "identity:getSecret:after", // compared, the proof not yet recorded
  "response:/oauth2/token", // proof recorded, the token never returned
  "request:/iot/config", // acknowledgement never processed
  "identity:retirePreviousSecret:before", // completed and committed, the previous secret not yet retired
  "response:/iot/config", // acknowledged and committed, response never sent
  "publish:rotation", // after the acknowledgement, before the next device's notice
];

describe("a backend killed at any step of a rotation loses no device", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let controller: TestServer;
  before(async () => {
    await requireKeycloak();
    database = await createTestDatabase();
    controller = await startTestServer({ databaseUrl: database.url, env: keycloakEnv() });
  });
  after(async () => {
    await controller.stop();
    await database.drop();
  });

  for (const crashAt of CRASH_POINTS) {
    test(`killed at ${crashAt}`, async () => {
      const [first, second] = await createFleet(controller, 2);
      const port = await freePort();
      const baseUrl = `http://127.0.0.1:${port}`;
      const sims = [first!, second!].map((device) =>
        createSimulatedDevice({ baseUrl, tokenUrl: controller.services.identity.tokenUrl, clientId: device.clientId, secret: device.secret }),
      );
      await Promise.all(sims.map((sim) => sim.ready));

      const crashing = runEntry("test/support/crashing-server.ts", [], {
        cwd: controller.env.DATA_DIR!,
        env: bareEnv({ ...controller.env, PORT: String(port), BASEURL: baseUrl, CRASH_AT: crashAt, LOG_LEVEL: "silent" }),
      });
      try {
        await crashing.waitForOutput(/listening/);
        await controller.services.rotation.rotateDevice(first!.id, "test-admin");
        await controller.services.rotation.rotateDevice(second!.id, "test-admin");
        assert.equal(await crashing.exited(20_000), null, "killed by a signal");
        assert.match(crashing.stdout(), new RegExp(`crashing at ${crashAt.replace(/[/]/g, "\\/")}`));
      } finally {
        crashing.kill();
      }
      await Promise.all(sims.map((sim) => sim.settled()));

      // Restart on the same port and database, then run the next jobs (timeouts made due at once).
      const restarted = await startTestServer({ databaseUrl: database.url, port, env: keycloakEnv() });
      try {
        await waitFor("both devices to settle in OK or TIMEOUT", async () => {
          await expireNow(restarted);
          await restarted.services.rotation.runCycle();
          const states = await Promise.all([first!, second!].map(async (device) => (await deviceRow(restarted, device.id)).rotationState));
          return states.every((state) => state === "OK" || state === "TIMEOUT");
        }, 30_000, 300);
        for (const [index, sim] of sims.entries()) {
          assert.equal((await sim.authenticate()).ok, true, `device ${index + 1} holds a working secret`);
        }
        // And the device can still rotate afterwards.
        await restarted.services.rotation.rotateDevice(first!.id, "test-admin");
        await waitFor("a later rotation of the first device", async () => (await deviceRow(restarted, first!.id)).rotationState === "OK", 20_000, 100);
        // The row can turn OK while the device is still in its rotation (a proof left by the crash completes it at the
        // first request): its secrets are judged once it is done.
        await sims[0]!.settled();
        assert.equal((await sims[0]!.authenticate()).ok, true, "device 1 holds a working secret after its later rotation");
      } finally {
        await Promise.all(sims.map((sim) => sim.stop()));
        await restarted.stop();
        // Leave no device of this case in the way of the next one.
        await controller.services.database.db.update(devices).set({ rotationState: "OK" }).where(eq(devices.rotationState, "PENDING"));
      }
    });
  }
});
