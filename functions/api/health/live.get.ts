import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "GET",
  path: "/api/health/live",
  access: "public",
  summary: "Liveness: 200 while the process can serve requests",
  tags: ["Operations"],
  responses: { 200: { description: "Alive" } },
  uses: [],
  async handler() {
    return json({ status: "alive" }, 200, { "cache-control": "no-store" });
  },
});
