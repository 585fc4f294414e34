import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { dashboardSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/rotation/dashboard",
  access: "admin",
  summary: "Devices grouped by rotation health (healthy, warning, critical)",
  description: "warning = TIMEOUT with fewer than ROTATION_CRITICAL_THRESHOLD_DAYS days since the last completed rotation; critical = the other TIMEOUT devices.",
  tags: ["Rotation"],
  responses: { 200: { description: "The dashboard", content: { "application/json": { schema: dashboardSchema } } } },
  uses: ["rotation"],
  async handler(_request, { services }) {
    return json(await services.rotation.dashboard());
  },
});
