import { defineRoute } from "../../../../lib/http/route.ts";
import { actorOf } from "../../../../lib/identity/principal.ts";
import { json } from "../../../../lib/http/respond.ts";
import { pinBody } from "../../../../lib/rollouts/schemas.ts";
import { deviceSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "PUT",
  path: "/api/devices/:id/firmware-pin",
  access: "admin",
  summary: "Pin the device to a firmware version of its model, whatever rollouts say",
  description:
    "The device's target becomes the version at once (it gets a firmware notice); a rollout that had admitted it lets it go. " +
    "400 when the version is not one of the device's model.",
  tags: ["Devices"],
  request: { params: idParams, body: pinBody },
  responses: { 200: { description: "The device", content: { "application/json": { schema: deviceSchema } } } },
  uses: ["rollouts", "devices"],
  async handler(_request, { services, params, body, principal }) {
    await services.rollouts.pin(params.id, body.version_id, actorOf(principal));
    return json(await services.devices.get(params.id));
  },
});
