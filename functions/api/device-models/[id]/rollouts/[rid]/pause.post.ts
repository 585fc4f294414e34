import { defineRoute } from "../../../../../../lib/http/route.ts";
import { json } from "../../../../../../lib/http/respond.ts";
import { actorOf } from "../../../../../../lib/identity/principal.ts";
import { rolloutParams, rolloutSchema } from "../../../../../../lib/rollouts/schemas.ts";
import { errorSchema } from "../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models/:id/rollouts/:rid/pause",
  access: "admin",
  summary: "Pause a running rollout: nobody more is admitted; admitted devices are still judged",
  description: "409 ROLLOUT_STATE unless the rollout is running.",
  tags: ["Rollouts"],
  request: { params: rolloutParams },
  responses: {
    200: { description: "The rollout", content: { "application/json": { schema: rolloutSchema } } },
    409: { description: "The rollout is not running (ROLLOUT_STATE)", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["rollouts"],
  async handler(_request, { services, params, principal }) {
    return json(await services.rollouts.pause(params.id, params.rid, actorOf(principal)));
  },
});
