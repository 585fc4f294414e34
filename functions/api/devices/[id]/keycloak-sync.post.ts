import { actorOf } from "../../../../lib/identity/principal.ts";
import { deviceClientSyncSchema, syncDeviceClient } from "../../../../lib/device-clients.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/devices/:id/keycloak-sync",
  access: "admin",
  summary: "Repair or recreate the device's OAuth2 client",
  description:
    "An existing client gets its settings put back and keeps its secret. A missing client is created with a new " +
    "secret: then `stale_secret` is true and the device must be provisioned (re-flashed) again.",
  tags: ["Devices"],
  request: { params: idParams },
  responses: { 200: { description: "The client after the repair", content: { "application/json": { schema: deviceClientSyncSchema } } } },
  uses: ["logger", "database", "identity", "devices", "audit"],
  async handler(_request, { services, params, principal }) {
    return json(await syncDeviceClient(services, params.id, actorOf(principal)));
  },
});
