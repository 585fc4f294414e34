import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { modelListSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models",
  access: "admin",
  summary: "List device models, sorted by code",
  tags: ["Device models"],
  responses: { 200: { description: "The device models", content: { "application/json": { schema: modelListSchema } } } },
  uses: ["models"],
  async handler(_request, { services }) {
    const deviceModels = await services.models.list();
    return json({ device_models: deviceModels, count: deviceModels.length });
  },
});
