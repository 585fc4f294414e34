import { DEFAULT_STALE_HOURS, withCrashes } from "../../../../lib/device-state/fleet.ts";
import { json } from "../../../../lib/http/respond.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { fleetQuery, fleetSchema, idParams } from "../../../../lib/schemas.ts";

/** A rollout's crash rate is what matters: the last week's core dumps. */
const CRASH_WINDOW_MS = 7 * 86_400_000;

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/fleet",
  access: "admin",
  summary: "What the model's devices run and should run, how many are stale or differ from their target, and crashes per version",
  tags: ["Device models"],
  request: { params: idParams, query: fleetQuery },
  responses: {
    200: { description: "The model's fleet", content: { "application/json": { schema: fleetSchema } } },
    404: { description: "No such model" },
  },
  uses: ["deviceState", "coreDumps"],
  async handler(_request, { services, params, query }) {
    const fleet = await services.deviceState.fleet(params.id, query.stale_hours ?? DEFAULT_STALE_HOURS);
    return json(withCrashes(fleet, await services.coreDumps.crashCounts(params.id, new Date(Date.now() - CRASH_WINDOW_MS))));
  },
});
