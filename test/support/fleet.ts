import { eq } from "drizzle-orm";
import { builtinClients, devices, rotationQueue } from "../../db/schema.ts";
import type { DeviceRow } from "../../db/schema.ts";
import { shownRotationState } from "./dashboard-oracle.ts";
import type { TestServer } from "./server.ts";
import { createLegacyDevice } from "./legacy-device.ts";
import { createSimulatedDevice, type Misbehaviour, type SimulatedDevice } from "./simulated-device.ts";

/** Creates a model and `count` devices through the admin API; returns their ids, client ids and initial secrets. */
export async function createFleet(server: TestServer, count: number, code = `m${Math.random().toString(36).slice(2, 8)}`) {
  const model = await (await server.admin("POST", "/api/device-models", { code, name: `Model ${code}` })).json();
  const fleet: { id: number; key: string; clientId: string; secret: string }[] = [];
  for (let i = 0; i < count; i++) {
    const response = await server.admin("POST", "/api/devices", { device_model_id: model.id, config: JSON.stringify({ deviceName: `device ${i}` }) });
    if (response.status !== 201) throw new Error(`device creation failed: ${response.status} ${await response.text()}`);
    const device = await response.json();
    fleet.push({ id: device.id, key: device.key, clientId: device.client_id, secret: await server.services.identity.getSecret(device.client_id) });
  }
  return fleet;
}

const withQueueRow = (server: Pick<TestServer, "services">) =>
  server.services.database.db.select({ row: devices, queueRow: rotationQueue.deviceId }).from(devices).leftJoin(rotationQueue, eq(rotationQueue.deviceId, devices.id));

/** The device's row, its rotationState as the API shows it. */
export async function deviceRow(server: Pick<TestServer, "services">, id: number): Promise<DeviceRow> {
  const [found] = await withQueueRow(server).where(eq(devices.id, id));
  if (!found) throw new Error(`device ${id} is gone`);
  return { ...found.row, rotationState: shownRotationState(found.row.rotationState, found.queueRow) };
}

export async function statesOf(server: Pick<TestServer, "services">) {
  const rows = await withQueueRow(server);
  return Object.fromEntries(rows.map(({ row, queueRow }) => [row.id, shownRotationState(row.rotationState, queueRow)]));
}

const simulations = new Set<SimulatedDevice>();

/** A simulated device (test/support/simulated-device.ts) for one device of a fleet, against this server. */
export function simulate(server: TestServer, device: { clientId: string; secret: string }, misbehaviour: Misbehaviour = "none") {
  const sim = createSimulatedDevice({ baseUrl: server.url, tokenUrl: server.services.identity.tokenUrl, clientId: device.clientId, secret: device.secret, misbehaviour });
  simulations.add(sim);
  return sim;
}

/**
 * Disconnects every simulated device at once, wherever its rotation stands. For a file's `after`: a test that fails
 * before its own stop() would otherwise leave MQTT clients that keep the test process from ever exiting.
 */
export async function disconnectSimulations(): Promise<void> {
  await Promise.all([...simulations].map((sim) => sim.disconnect()));
  simulations.clear();
}

/** Makes a PENDING rotation overdue (as if notified an hour ago), so the next cycle times it out; every one without `id`. */
export async function expireNow(server: Pick<TestServer, "services">, id?: number): Promise<void> {
  await server.services.database.db
    .update(devices)
    .set({ rotationStartedAt: new Date(Date.now() - 3_600_000) })
    .where(id === undefined ? eq(devices.rotationState, "PENDING") : eq(devices.id, id));
}

/** A device that behaves like the deployed firmware (test/support/legacy-device.ts), against this server. */
export const legacyDevice = (server: TestServer, device: { clientId: string; secret: string }) =>
  createLegacyDevice({ baseUrl: `${server.url}/`, tokenUrl: server.services.identity.tokenUrl, clientId: device.clientId, secret: device.secret });

/** Makes every TIMEOUT device's retry due now. */
export async function retryNow(server: Pick<TestServer, "services">): Promise<void> {
  await server.services.database.db.update(devices).set({ nextRetryAt: new Date(Date.now() - 1000) }).where(eq(devices.rotationState, "TIMEOUT"));
}

/** Lets the grace period of a device's previous secret end now (built-in provider), as if ROTATION_PREVIOUS_SECRET_GRACE_DAYS had passed. */
export async function endGrace(server: Pick<TestServer, "services">, device: { id: number; clientId: string }): Promise<void> {
  const past = new Date(Date.now() - 1000);
  const { db } = server.services.database;
  await db.update(builtinClients).set({ previousSecretExpiresAt: past }).where(eq(builtinClients.clientId, device.clientId));
  await db.update(devices).set({ previousSecretExpiresAt: past }).where(eq(devices.id, device.id));
}
