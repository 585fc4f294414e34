import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { deviceListQuery, deviceListSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices",
  access: "admin",
  summary: "List devices, sorted by key",
  tags: ["Devices"],
  request: { query: deviceListQuery },
  responses: { 200: { description: "The devices", content: { "application/json": { schema: deviceListSchema } } } },
  uses: ["devices"],
  async handler(_request, { services, query }) {
    const devices = await services.devices.list(query);
    return json({ devices, count: devices.length });
  },
});
