import { actorOf } from "../../../../lib/identity/principal.ts";
import { z } from "zod";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

export default defineRoute({
  method: "POST",
  path: "/api/devices/:id/rotate",
  access: "admin",
  summary: "Queue this device for rotation; if nothing is rotating, start it now",
  tags: ["Rotation"],
  request: { params: idParams },
  responses: {
    200: {
      description: "Queued, or already rotating",
      content: { "application/json": { schema: z.object({ status: z.enum(["queued", "already_pending"]) }) } },
    },
  },
  uses: ["rotation"],
  async handler(_request, { services, params, principal }) {
    return json({ status: await services.rotation.rotateDevice(params.id, actorOf(principal)) });
  },
});
