import { defineRoute } from "../../../../../../lib/http/route.ts";
import { json } from "../../../../../../lib/http/respond.ts";
import { rolloutDetailSchema, rolloutParams } from "../../../../../../lib/rollouts/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/rollouts/:rid",
  access: "admin",
  summary: "A rollout with each of its devices: wave, state, downloads and why it failed",
  tags: ["Rollouts"],
  request: { params: rolloutParams },
  responses: { 200: { description: "The rollout", content: { "application/json": { schema: rolloutDetailSchema } } } },
  uses: ["models", "rollouts"],
  async handler(_request, { services, params }) {
    return json(await services.rollouts.get(await services.models.findRow(params.id), params.rid));
  },
});
