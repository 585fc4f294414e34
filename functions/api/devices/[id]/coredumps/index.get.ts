import { coreDumpListSchema } from "../../../../../lib/coredumps/schemas.ts";
import { defineRoute } from "../../../../../lib/http/route.ts";
import { json } from "../../../../../lib/http/respond.ts";
import { idParams } from "../../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id/coredumps",
  access: "admin",
  summary: "List a device's core dumps, newest first",
  tags: ["Device logs"],
  request: { params: idParams },
  responses: { 200: { description: "The core dumps (without their bytes)", content: { "application/json": { schema: coreDumpListSchema } } } },
  uses: ["devices", "coreDumps"],
  async handler(_request, { services, params }) {
    await services.devices.get(params.id);
    const coredumps = await services.coreDumps.list(params.id);
    return json({ coredumps, count: coredumps.length });
  },
});
