import { count } from "drizzle-orm";
import { devices, rotationStates } from "../db/schema.ts";
import { defineRoute } from "../lib/http/route.ts";

export default defineRoute({
  method: "GET",
  path: "/metrics",
  access: "public",
  summary: "Prometheus metrics",
  tags: ["Operations"],
  responses: { 200: { description: "Prometheus text exposition format", content: { "text/plain": { schema: { type: "string" } } } } },
  async handler(_request, { services }) {
    const { metrics, database } = services;
    const rows = await database.db.select({ state: devices.rotationState, n: count() }).from(devices).groupBy(devices.rotationState);
    for (const state of rotationStates) {
      metrics.devicesByState.set({ rotation_state: state }, rows.find((row) => row.state === state)?.n ?? 0);
    }
    return new Response(await metrics.registry.metrics(), { headers: { "content-type": metrics.registry.contentType } });
  },
});
