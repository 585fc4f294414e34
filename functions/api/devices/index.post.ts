import { actorOf } from "../../../lib/identity/principal.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { createDeviceBody, deviceSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/devices",
  access: "admin",
  summary: "Create a device and its OAuth2 client",
  description: "`config` is JSON text, validated against the model's config schema when it has one.",
  tags: ["Devices"],
  request: { body: createDeviceBody },
  responses: { 201: { description: "The new device", content: { "application/json": { schema: deviceSchema } } } },
  uses: ["devices"],
  async handler(_request, { services, body, principal }) {
    return json(await services.devices.create(body, actorOf(principal)), 201);
  },
});
