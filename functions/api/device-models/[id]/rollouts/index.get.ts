import { defineRoute } from "../../../../../lib/http/route.ts";
import { json } from "../../../../../lib/http/respond.ts";
import { rolloutListSchema } from "../../../../../lib/rollouts/schemas.ts";
import { idParams } from "../../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/rollouts",
  access: "admin",
  summary: "The model's rollouts, newest first",
  tags: ["Rollouts"],
  request: { params: idParams },
  responses: { 200: { description: "The rollouts", content: { "application/json": { schema: rolloutListSchema } } } },
  uses: ["models", "rollouts"],
  async handler(_request, { services, params }) {
    const rollouts = await services.rollouts.list(await services.models.findRow(params.id));
    return json({ rollouts, count: rollouts.length });
  },
});
