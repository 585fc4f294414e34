import { actorOf } from "../../../../lib/identity/principal.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { noContent } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/devices/:id",
  access: "admin",
  summary: "Delete a device and its OAuth2 client",
  tags: ["Devices"],
  request: { params: idParams },
  responses: { 204: { description: "Deleted" } },
  uses: ["devices"],
  async handler(_request, { services, params, principal }) {
    await services.devices.remove(params.id, actorOf(principal));
    return noContent();
  },
});
