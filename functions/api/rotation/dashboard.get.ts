import { defineRoute } from "../../../lib/http/route.ts";
import { jsonText, streamedJson } from "../../../lib/http/respond.ts";
import { DEFAULT_PAGE_LIMIT, encodeCursor } from "../../../lib/paging.ts";
import { dashboardGroups } from "../../../lib/rotation/dashboard.ts";
import { dashboardPageSchema, dashboardQuery, dashboardSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/rotation/dashboard",
  access: "admin",
  summary: "Devices grouped by rotation health (healthy, warning, critical)",
  description:
    "warning = TIMEOUT with fewer than ROTATION_CRITICAL_THRESHOLD_DAYS days since the last completed rotation; critical = the other TIMEOUT devices. Each group sorted by key. Without parameters: every group whole, streamed. With group (and limit, cursor): one page of that group, its next_cursor and the counts of all groups (docs/api.md, Long lists).",
  tags: ["Rotation"],
  request: { query: dashboardQuery },
  responses: {
    200: {
      description: "The dashboard, or one page of a group",
      content: { "application/json": { schema: dashboardSchema.or(dashboardPageSchema) } },
    },
  },
  uses: ["rotation"],
  async handler(_request, { services, query, logger }) {
    const now = new Date();
    const { group, limit, cursor } = query;
    if (group !== undefined) {
      const [page, counts] = await Promise.all([
        services.rotation.dashboardJsonPage(group, { after: cursor?.key, limit: limit ?? DEFAULT_PAGE_LIMIT, now }),
        services.rotation.dashboardCounts(now),
      ]);
      const next = page.next === null ? null : encodeCursor(`${group}:${page.next}`);
      // The rows are PostgreSQL's JSON text, as in the whole dashboard: joined as they are.
      return jsonText(`{"group":"${group}","devices":[${page.items.join(",")}],"next_cursor":${JSON.stringify(next)},"counts":${JSON.stringify(counts)}}`, 200, {
        "content-type": "application/json; charset=utf-8",
      });
    }
    const groups = dashboardGroups.map((name) => ({
      name,
      // Chunks of rows as PostgreSQL wrote their JSON, most kept ready: sent as they come.
      json: true as const,
      batches: services.rotation.dashboardJsonChunks(name, now),
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
