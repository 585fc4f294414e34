import { defineRoute } from "../../../lib/http/route.ts";
import { json, streamedList } from "../../../lib/http/respond.ts";
import { allPages, DEFAULT_PAGE_LIMIT, encodeCursor, STREAM_BATCH } from "../../../lib/paging.ts";
import { modelListQuery, modelListSchema } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/device-models",
  access: "admin",
  summary: "List device models, sorted by code",
  description: "Without limit and cursor: every model matching q, streamed. With either: one page and its next_cursor (docs/api.md, Long lists).",
  tags: ["Device models"],
  request: { query: modelListQuery },
  responses: { 200: { description: "The device models", content: { "application/json": { schema: modelListSchema } } } },
  uses: ["models"],
  async handler(_request, { services, query, logger }) {
    const { limit, cursor, ...filters } = query;
    if (limit === undefined && cursor === undefined) {
      return streamedList("device_models", allPages((after) => services.models.page({ ...filters, after, limit: STREAM_BATCH })), logger);
    }
    const page = await services.models.page({ ...filters, after: cursor, limit: limit ?? DEFAULT_PAGE_LIMIT });
    return json({ device_models: page.items, count: page.items.length, next_cursor: page.next === null ? null : encodeCursor(page.next) });
  },
});
