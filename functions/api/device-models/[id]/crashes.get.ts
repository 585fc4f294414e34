import { crashCountsSchema, crashQuery } from "../../../../lib/coredumps/schemas.ts";
import { defineRoute } from "../../../../lib/http/route.ts";
import { json } from "../../../../lib/http/respond.ts";
import { idParams } from "../../../../lib/schemas.ts";

const DAY_MS = 86_400_000;

export default defineRoute({
  method: "GET",
  path: "/api/device-models/:id/crashes",
  access: "admin",
  summary: "Crashes (core dumps received) of a model's devices per firmware version",
  description: "Counted from the stored core dumps, so bounded by their retention (COREDUMP_RETENTION_DAYS, COREDUMP_MAX_PER_DEVICE).",
  tags: ["Device models"],
  request: { params: idParams, query: crashQuery },
  responses: { 200: { description: "Crashes per firmware version", content: { "application/json": { schema: crashCountsSchema } } } },
  uses: ["models", "coreDumps"],
  async handler(_request, { services, params, query }) {
    await services.models.findRow(params.id);
    const since = new Date(Date.now() - (query.days ?? 7) * DAY_MS);
    return json({ device_model_id: params.id, since: since.toISOString(), versions: await services.coreDumps.crashCounts(params.id, since) });
  },
});
