/**
 * A device's OAuth2 client as the admin sees it (keycloak-status) and its repair (keycloak-sync). The names say
 * "keycloak" for the existing web UI; both identity providers answer.
 */
import { eq } from "drizzle-orm";
import { z } from "zod";
import { devices } from "../db/schema.ts";
import type { Actor } from "./audit/log.ts";
import type { Services } from "./context.ts";
import { deviceNotFound } from "./errors.ts";

export const deviceClientStatusSchema = z
  .object({
    exists: z.boolean(),
    client_id: z.string(),
    keycloak_uuid: z.string().nullable().meta({ description: "The provider's id of the client (the client id itself for the built-in provider)" }),
    console_url: z.string().nullable().meta({ description: "Link to the client in the Keycloak console; null for the built-in provider" }),
  })
  .meta({ id: "DeviceClientStatus" });

export const deviceClientSyncSchema = deviceClientStatusSchema
  .extend({
    created: z.boolean(),
    stale_secret: z.boolean().meta({ description: "True when the client was recreated: the device's secret no longer works" }),
    message: z.string(),
  })
  .meta({ id: "DeviceClientSync" });

type Deps = Pick<Services, "database" | "identity" | "devices" | "logger">;

async function statusOf(identity: Services["identity"], clientId: string): Promise<z.infer<typeof deviceClientStatusSchema>> {
  const status = await identity.status(clientId);
  return { exists: status.exists, client_id: clientId, keycloak_uuid: status.externalId, console_url: status.consoleUrl };
}

export async function deviceClientStatus(deps: Deps, deviceId: number) {
  const { device } = await deps.devices.findWithModel(deviceId);
  return statusOf(deps.identity, device.clientId);
}

const RECREATED =
  "The client was recreated with a new secret; download the provisioning package again and re-flash the device.";
const REPAIRED = "The client exists and its settings were checked; the device's secret is unchanged.";

/** Repairs the device's client, or recreates it (then the device's secret is stale and secret_created_at is now). */
export async function syncDeviceClient(deps: Deps & Pick<Services, "audit">, deviceId: number, actor: Actor): Promise<z.infer<typeof deviceClientSyncSchema>> {
  const { device } = await deps.devices.findWithModel(deviceId);
  const { created } = await deps.identity.ensureClient(device.clientId);
  if (created) {
    const now = new Date();
    const updated = await deps.database.db
      .update(devices)
      .set({ secretCreatedAt: now, updatedAt: now })
      .where(eq(devices.id, device.id))
      .returning({ id: devices.id });
    if (updated.length === 0) {
      // Deleted meanwhile: the client just created would be an orphan.
      await deps.identity.deleteClient(device.clientId);
      throw deviceNotFound(deviceId);
    }
    // After the row, not with it: the client exists already whatever happens to the row (and the event) now.
    await deps.audit.record(deps.database.db, {
      actor,
      kind: "device.client_recreated",
      deviceId: device.id,
      modelId: device.deviceModelId,
      details: { key: device.key, client_id: device.clientId },
    });
    deps.logger.warn("OAuth2 client recreated; the device must be provisioned again", { client_id: device.clientId });
  }
  return {
    ...(await statusOf(deps.identity, device.clientId)),
    created,
    stale_secret: created,
    message: created ? RECREATED : REPAIRED,
  };
}
