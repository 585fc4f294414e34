import { defineRoute } from "../../../../lib/http/route.ts";
import { actorOf } from "../../../../lib/identity/principal.ts";
import { json } from "../../../../lib/http/respond.ts";
import { deviceSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/devices/:id/firmware-pin",
  access: "admin",
  summary: "Unpin the device: its target follows rollouts and its model's stable version again",
  tags: ["Devices"],
  request: { params: idParams },
  responses: { 200: { description: "The device", content: { "application/json": { schema: deviceSchema } } } },
  uses: ["rollouts", "devices"],
  async handler(_request, { services, params, principal }) {
    await services.rollouts.pin(params.id, null, actorOf(principal));
    return json(await services.devices.get(params.id));
  },
});
