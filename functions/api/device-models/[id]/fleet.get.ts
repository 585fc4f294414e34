import { DEFAULT_STALE_HOURS } from "../../../../lib/device-state/fleet.ts";
import { json } from "../../../../lib/http/respond.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { fleetQuery, fleetSchema, idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/fleet",
  access: "admin",
  summary: "What the model's devices run and should run, and how many are stale or differ from their target",
  tags: ["Device models"],
  request: { params: idParams, query: fleetQuery },
  responses: {
    200: { description: "The model's fleet", content: { "application/json": { schema: fleetSchema } } },
    404: { description: "No such model" },
  },
  uses: ["deviceState"],
  async handler(_request, { services, params, query }) {
    return json(await services.deviceState.fleet(params.id, query.stale_hours ?? DEFAULT_STALE_HOURS));
  },
});
