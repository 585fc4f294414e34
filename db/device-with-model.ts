import { eq, sql } from "drizzle-orm";
import type { Database } from "./client.ts";
import { deviceModels, devices } from "./schema.ts";

/** Devices joined with their models, as `{ device, model }` rows; callers add the `where`. */
export const devicesWithModels = (db: Database) =>
  db.select({ device: devices, model: deviceModels }).from(devices).innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id));

/**
 * The device a token's client id names, with its model, as a prepared statement: built once, because composing the
 * query anew cost more time and garbage than running it (every device request).
 */
export const prepareDeviceByClientId = (db: Database) =>
  devicesWithModels(db).where(eq(devices.clientId, sql.placeholder("clientId"))).prepare("device_by_client_id");
