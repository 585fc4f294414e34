import { defineRoute } from "../../../../lib/http/route.ts";
import { noContent } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/device-models/:id",
  access: "admin",
  summary: "Delete a device model and its firmware (409 while devices use it)",
  tags: ["Device models"],
  request: { params: idParams },
  responses: { 204: { description: "Deleted" } },
  uses: ["models"],
  async handler(_request, { services, params }) {
    await services.models.remove(params.id);
    return noContent();
  },
});
