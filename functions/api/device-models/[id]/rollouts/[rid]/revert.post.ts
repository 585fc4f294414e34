import { defineRoute } from "../../../../../../lib/http/route.ts";
import { json } from "../../../../../../lib/http/respond.ts";
import { actorOf } from "../../../../../../lib/identity/principal.ts";
import { rolloutParams, rolloutSchema } from "../../../../../../lib/rollouts/schemas.ts";
import { errorSchema } from "../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models/:id/rollouts/:rid/revert",
  access: "admin",
  summary: "Roll back: a new rollout (same plan) of the stable version this one started from",
  description:
    "Aborts the rollout if it is active, then starts a rollout of its previous_version_id to every device whose target is " +
    "not that version (the devices that got the new one). 409 ROLLOUT_STATE when it began with no stable version.",
  tags: ["Rollouts"],
  request: { params: rolloutParams },
  responses: {
    201: { description: "The new rollout", content: { "application/json": { schema: rolloutSchema } } },
    409: { description: "Nothing to revert to, or a pre-flight check refused", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["rollouts"],
  async handler(_request, { services, params, principal }) {
    return json(await services.rollouts.revert(params.id, params.rid, actorOf(principal)), 201);
  },
});
