import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { rotationStatusSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/rotation/status",
  access: "admin",
  summary: "Devices per rotation state, the pending device and the next scheduled rotation",
  tags: ["Rotation"],
  responses: { 200: { description: "Rotation status", content: { "application/json": { schema: rotationStatusSchema } } } },
  uses: ["rotation"],
  async handler(_request, { services }) {
    return json(await services.rotation.status());
  },
});
