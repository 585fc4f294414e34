import { eq } from "drizzle-orm";
import { devices } from "../db/schema.ts";
import { SYSTEM_ACTOR } from "./audit/log.ts";
import type { Services } from "./context.ts";
import { allPages, MAX_PAGE_LIMIT } from "./paging.ts";
import { enqueue } from "./rotation/queue.ts";

/** A small fleet for trying the product: three models (one with a schema) and devices in every rotation state. */
const MODELS = [
  {
    code: "esp32_thermostat",
    name: "ESP32 Thermostat",
    config_schema: JSON.stringify({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      properties: {
        deviceName: { type: "string", minLength: 1 },
        deviceEntityId: { type: "string" },
        enableOTA: { type: "boolean" },
        targetTemperature: { type: "number", minimum: 5, maximum: 30 },
      },
      required: ["deviceName"],
    }),
  },
  { code: "esp32_switch", name: "ESP32 Relay Switch", config_schema: null },
  { code: "esp32c3_sensor", name: "ESP32-C3 Air Sensor", config_schema: null },
];

const ROOMS = ["Kitchen", "Hall", "Office", "Garage", "Bedroom", "Attic", "Cellar", "Porch", "Lab"];
const STATES = ["OK", "OK", "OK", "QUEUED", "QUEUED", "PENDING", "TIMEOUT", "TIMEOUT", "OK"] as const;

const everyDevice = (services: Services) => allPages((after) => services.devices.page({ after, limit: MAX_PAGE_LIMIT }));
const everyModel = (services: Services) => allPages((after) => services.models.page({ after, limit: MAX_PAGE_LIMIT }));

/** How many models and devices there are. */
export async function fleetSize(services: Services): Promise<number> {
  let n = 0;
  for await (const batch of everyDevice(services)) n += batch.length;
  for await (const batch of everyModel(services)) n += batch.length;
  return n;
}

export async function wipeFleet(services: Services) {
  for await (const batch of everyDevice(services)) for (const device of batch) await services.devices.remove(device.id, SYSTEM_ACTOR);
  for await (const batch of everyModel(services)) for (const model of batch) await services.models.remove(model.id, SYSTEM_ACTOR);
}

export async function loadSampleFleet(services: Services) {
  const models = [];
  for (const model of MODELS) models.push(await services.models.create(model, SYSTEM_ACTOR));
  let created = 0;
  for (const [index, room] of ROOMS.entries()) {
    const model = models[index % models.length]!;
    const config = { deviceName: `${room} ${model.name.split(" ").at(-1)}`, deviceEntityId: `${model.code}.${room.toLowerCase()}`, enableOTA: index % 2 === 0 };
    const device = await services.devices.create({ device_model_id: model.id, config: JSON.stringify(config, null, 2) }, SYSTEM_ACTOR);
    const state = STATES[index]!;
    const daysAgo = state === "TIMEOUT" ? (index % 2 === 0 ? 3 : 30) : 10;
    await services.database.db
      .update(devices)
      .set({
        rotationState: state === "QUEUED" ? "OK" : state,
        lastRotationCompletedAt: new Date(Date.now() - daysAgo * 86_400_000),
        rotationStartedAt: state === "PENDING" ? new Date() : null,
      })
      .where(eq(devices.id, device.id));
    if (state === "QUEUED") await enqueue(services.database.db, eq(devices.id, device.id));
    created++;
  }
  return { models: models.length, devices: created };
}
