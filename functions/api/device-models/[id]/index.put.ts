import { actorOf } from "../../../../lib/identity/principal.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams, modelSchema, updateModelBody } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "PUT",
  path: "/api/device-models/:id",
  access: "admin",
  summary: "Update a device model's name or config schema",
  tags: ["Device models"],
  request: { params: idParams, body: updateModelBody },
  responses: { 200: { description: "The updated model", content: { "application/json": { schema: modelSchema } } } },
  uses: ["models"],
  async handler(_request, { services, params, body, principal }) {
    return json(await services.models.update(params.id, body, actorOf(principal)));
  },
});
