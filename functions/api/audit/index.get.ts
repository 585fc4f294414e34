import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { auditPageSchema, auditQuery } from "../../../lib/schemas.ts";

export default defineRoute({
  method: "GET",
  path: "/api/audit",
  access: "admin",
  summary: "The audit trail: admin actions and device transitions, newest first, a page at a time",
  description:
    "Filters combine (all must hold). A page holds `limit` events; `next_cursor` continues with the next older page and is " +
    "null on the last one. Paging by cursor visits every event that existed when the first page was read exactly once, " +
    "however many are recorded meanwhile (newer ones appear on a new first page). Ids of deleted devices and models still match.",
  tags: ["Audit"],
  request: { query: auditQuery },
  responses: { 200: { description: "A page of events", content: { "application/json": { schema: auditPageSchema } } } },
  uses: ["audit"],
  async handler(_request, { services, query }) {
    return json(await services.audit.list(query));
  },
});
