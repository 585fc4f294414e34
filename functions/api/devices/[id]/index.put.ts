import { actorOf } from "../../../../lib/identity/principal.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { deviceSchema, idParams, updateDeviceBody } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "PUT",
  path: "/api/devices/:id",
  access: "admin",
  summary: "Replace a device's config (re-validated; MQTT config notice after the commit)",
  tags: ["Devices"],
  request: { params: idParams, body: updateDeviceBody },
  responses: { 200: { description: "The updated device", content: { "application/json": { schema: deviceSchema } } } },
  uses: ["devices"],
  async handler(_request, { services, params, body, principal }) {
    return json(await services.devices.update(params.id, body, actorOf(principal)));
  },
});
