import { actorOf } from "../../../../lib/identity/principal.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { noContent } from "../../../../lib/http/respond.ts";
import { errorSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "DELETE",
  path: "/api/device-models/:id",
  access: "admin",
  summary: "Delete a device model and its firmware (409 while devices use it)",
  tags: ["Device models"],
  request: { params: idParams },
  responses: {
    204: { description: "Deleted" },
    409: { description: "Devices still use the model (MODEL_HAS_DEVICES); nothing is deleted", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["models"],
  async handler(_request, { services, params, principal }) {
    await services.models.remove(params.id, actorOf(principal));
    return noContent();
  },
});
