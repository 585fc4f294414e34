import { actorOf } from "../../../lib/identity/principal.ts";
import { z } from "zod";
import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "POST",
  path: "/api/rotation/trigger",
  access: "admin",
  summary: "Queue every OK device for rotation and start at once",
  tags: ["Rotation"],
  responses: {
    200: { description: "How many devices were queued", content: { "application/json": { schema: z.object({ queued_count: z.number().int() }) } } },
  },
  uses: ["rotation"],
  async handler(_request, { services, principal }) {
    return json({ queued_count: await services.rotation.triggerAll(actorOf(principal)) });
  },
});
