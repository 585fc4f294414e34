import { defineRoute } from "../../../lib/http/route.ts";
import { json, streamedList } from "../../../lib/http/respond.ts";
import { allPages, DEFAULT_PAGE_LIMIT, encodeCursor, STREAM_BATCH } from "../../../lib/paging.ts";
import { deviceListQuery, deviceListSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/devices",
  access: "admin",
  summary: "List devices, sorted by key",
  description:
    "Without limit and cursor: every device matching the filters, streamed. With either: one page and its next_cursor (docs/api.md, Long lists).",
  tags: ["Devices"],
  request: { query: deviceListQuery },
  responses: { 200: { description: "The devices", content: { "application/json": { schema: deviceListSchema } } } },
  uses: ["devices"],
  async handler(_request, { services, query, logger }) {
    const { limit, cursor, ...filters } = query;
    if (limit === undefined && cursor === undefined) {
      return streamedList("devices", allPages((after) => services.devices.page({ ...filters, after, limit: STREAM_BATCH })), logger);
    }
    const page = await services.devices.page({ ...filters, after: cursor, limit: limit ?? DEFAULT_PAGE_LIMIT });
    return json({ devices: page.items, count: page.items.length, next_cursor: page.next === null ? null : encodeCursor(page.next) });
  },
});
