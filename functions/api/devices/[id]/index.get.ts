import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { deviceSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id",
  access: "admin",
  summary: "Read a device",
  tags: ["Devices"],
  request: { params: idParams },
  responses: { 200: { description: "The device", content: { "application/json": { schema: deviceSchema } } } },
  uses: ["devices"],
  async handler(_request, { services, params }) {
    return json(await services.devices.get(params.id));
  },
});
