import { defineRoute } from "../../../../../../../../lib/http/route.ts";
import { json } from "../../../../../../../../lib/http/respond.ts";
import { actorOf } from "../../../../../../../../lib/identity/principal.ts";
import { rolloutDeviceParams, rolloutSchema } from "../../../../../../../../lib/rollouts/schemas.ts";
import { errorSchema } from "../../../../../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/device-models/:id/rollouts/:rid/devices/:device_id/retry",
  access: "admin",
  summary: "Offer the version again to a device the rollout failed",
  description:
    "While the rollout is active the device waits for admission again; once it completed, the device follows the stable " +
    "version (the rollout's) again. 409 ROLLOUT_STATE when the device has not failed or the rollout was aborted.",
  tags: ["Rollouts"],
  request: { params: rolloutDeviceParams },
  responses: {
    200: { description: "The rollout", content: { "application/json": { schema: rolloutSchema } } },
    409: { description: "The device has not failed, or the rollout was aborted (ROLLOUT_STATE)", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["rollouts"],
  async handler(_request, { services, params, principal }) {
    return json(await services.rollouts.retry(params.id, params.rid, params.device_id, actorOf(principal)));
  },
});
