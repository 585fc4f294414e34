import { defineRoute } from "../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/metrics",
  access: "public",
  summary: "Prometheus metrics",
  tags: ["Operations"],
  responses: { 200: { description: "Prometheus text exposition format", content: { "text/plain": { schema: { type: "string" } } } } },
  uses: ["metrics"],
  async handler(_request, { services: { metrics } }) {
    return new Response(await metrics.registry.metrics(), { headers: { "content-type": metrics.registry.contentType } });
  },
});
