import { coreDumpParams } from "../../../../../lib/coredumps/schemas.ts";
import { defineRoute } from "../../../../../lib/http/route.ts";
import { noContent } from "../../../../../lib/http/respond.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/devices/:id/coredumps/:cid",
  access: "admin",
  summary: "Delete one core dump",
  tags: ["Device logs"],
  request: { params: coreDumpParams },
  responses: { 204: { description: "Deleted" } },
  uses: ["devices", "coreDumps"],
  async handler(_request, { services, params }) {
    await services.devices.get(params.id);
    await services.coreDumps.remove(params.id, params.cid);
    return noContent();
  },
});
