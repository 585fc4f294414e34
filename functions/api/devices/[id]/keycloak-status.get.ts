import { deviceClientStatus, deviceClientStatusSchema } from "../../../../lib/device-clients.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id/keycloak-status",
  access: "admin",
  summary: "Whether the device's OAuth2 client exists in the identity provider",
  description: "A missing client is `exists: false`, not a 404; POST keycloak-sync recreates it.",
  tags: ["Devices"],
  request: { params: idParams },
  responses: { 200: { description: "The client's status", content: { "application/json": { schema: deviceClientStatusSchema } } } },
  uses: ["logger", "database", "identity", "devices"],
  async handler(_request, { services, params }) {
    return json(await deviceClientStatus(services, params.id));
  },
});
