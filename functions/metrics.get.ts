import { defineRoute } from "../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/metrics",
  access: "public",
  summary: "Prometheus metrics",
  tags: ["Operations"],
  responses: { 200: { description: "Prometheus text exposition format", content: { "text/plain": { schema: { type: "string" } } } } },
  async handler(_request, { services }) {
    const { metrics } = services;
    for (const [state, n] of Object.entries(await services.rotation.countsByState())) metrics.devicesByState.set({ rotation_state: state }, n);
    metrics.firmwareCacheBytes.set(services.firmware.cachedBytes());
    return new Response(await metrics.registry.metrics(), { headers: { "content-type": metrics.registry.contentType } });
  },
});
