import { defineRoute } from "../../../../../lib/http/route.ts";
import { json } from "../../../../../lib/http/respond.ts";
import { actorOf } from "../../../../../lib/identity/principal.ts";
import { createRolloutBody, rolloutSchema } from "../../../../../lib/rollouts/schemas.ts";
import { errorSchema, idParams } from "../../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models/:id/rollouts",
  access: "admin",
  summary: "Start a staged rollout of a firmware version to the model's devices",
  description:
    "Canary first, then cumulative waves; each wave soaks before the next opens, at most max_concurrent devices are admitted and " +
    "not yet proven at once, and failures pause it (docs/rollouts.md). Devices already targeting the version and pinned devices " +
    "take no part; with none left, the version is the stable one at once (state completed). Pre-flight: 409 " +
    "IMAGE_CHANGE_NOT_CONFIRMED, DOWNGRADE_NOT_CONFIRMED (confirmable), SECURE_VERSION_TOO_LOW; 409 ROLLOUT_ACTIVE while " +
    "another rollout of the model is running or paused.",
  tags: ["Rollouts"],
  request: { params: idParams, body: createRolloutBody },
  responses: {
    201: { description: "The rollout", content: { "application/json": { schema: rolloutSchema } } },
    409: { description: "Another rollout is active, or a pre-flight check refused", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["rollouts"],
  async handler(_request, { services, params, body, principal }) {
    return json(await services.rollouts.create(params.id, body, actorOf(principal)), 201);
  },
});
