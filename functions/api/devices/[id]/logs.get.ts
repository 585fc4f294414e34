import { logPageSchema, logQuery } from "../../../../lib/device-logs/schemas.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

const HOUR_MS = 3_600_000;

export default defineRoute({
  method: "GET",
  path: "/api/devices/:id/logs",
  access: "admin",
  summary: "Read a device's log lines in a time window",
  description:
    "Lines in [start, end), oldest first, at most DEVICE_LOG_QUERY_LIMIT (or `limit`) of them; `has_more` says the window holds " +
    "more. Poll with the answer's `window_end` as the next `start`: no line is repeated or skipped. The window ends before lines " +
    "still on their way to the database. A device without lines answers an empty list.",
  tags: ["Device logs"],
  request: { params: idParams, query: logQuery },
  responses: { 200: { description: "The lines", content: { "application/json": { schema: logPageSchema } } } },
  uses: ["config", "devices", "deviceLogs"],
  async handler(_request, { services, params, query }) {
    await services.devices.get(params.id);
    const end = query.end ?? new Date();
    const start = query.start ?? new Date(end.getTime() - HOUR_MS);
    const limit = Math.min(query.limit ?? Number.POSITIVE_INFINITY, services.config.DEVICE_LOG_QUERY_LIMIT);
    return json(await services.deviceLogs.read(params.id, { start, end, query: query.query || undefined, limit }));
  },
});
