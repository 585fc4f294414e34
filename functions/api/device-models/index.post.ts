import { actorOf } from "../../../lib/identity/principal.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { createModelBody, errorSchema, modelSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models",
  access: "admin",
  summary: "Create a device model",
  description: "`config_schema` is JSON Schema text (draft 2020-12, or draft-07 when its `$schema` says so). A duplicate code is a 409.",
  tags: ["Device models"],
  request: { body: createModelBody },
  responses: {
    201: { description: "The new model", content: { "application/json": { schema: modelSchema } } },
    409: { description: "A model with this code already exists (DUPLICATE_MODEL_CODE)", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["models"],
  async handler(_request, { services, body, principal }) {
    return json(await services.models.create(body, actorOf(principal)), 201);
  },
});
