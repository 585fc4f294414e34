import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams, modelSchema } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id",
  access: "admin",
  summary: "Read a device model",
  tags: ["Device models"],
  request: { params: idParams },
  responses: { 200: { description: "The model", content: { "application/json": { schema: modelSchema } } } },
  uses: ["models"],
  async handler(_request, { services, params }) {
    return json(await services.models.get(params.id));
  },
});
