import { defineRoute } from "../../../lib/http/route.ts";
import { streamedJson } from "../../../lib/http/respond.ts";
import { allPages, STREAM_BATCH } from "../../../lib/paging.ts";
import { dashboardGroups } from "../../../lib/rotation/service.ts";
import { dashboardSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/rotation/dashboard",
  access: "admin",
  summary: "Devices grouped by rotation health (healthy, warning, critical)",
  description:
    "warning = TIMEOUT with fewer than ROTATION_CRITICAL_THRESHOLD_DAYS days since the last completed rotation; critical = the other TIMEOUT devices. Each group sorted by key; streamed.",
  tags: ["Rotation"],
  responses: { 200: { description: "The dashboard", content: { "application/json": { schema: dashboardSchema } } } },
  uses: ["rotation"],
  async handler(_request, { services, logger }) {
    const now = new Date();
    const groups = dashboardGroups.map((name) => ({
      name,
      // Rows as PostgreSQL wrote their JSON: sent as they come.
      json: true,
      batches: allPages((after) => services.rotation.dashboardJsonPage(name, { after, limit: STREAM_BATCH, now })),
    }));
    return streamedJson(
      groups,
      async ([healthy, warning, critical]) => ({
        counts: { healthy, warning, critical, unconfirmed: await services.rotation.unconfirmedCount() },
      }),
      logger,
    );
  },
});
