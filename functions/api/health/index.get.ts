import { z } from "zod";
import { checkHealth } from "../../../lib/health.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";

const healthSchema = z
  .object({
    status: z.enum(["healthy", "unhealthy"]),
    database: z.enum(["connected", "disconnected"]),
    mqtt: z.enum(["connected", "disconnected", "disabled"]),
    embedded_mqtt: z
      .object({
        state: z.enum(["running", "unavailable"]),
        address: z.string().meta({ description: "host:port it listens on, or tried to" }),
        port: z.number().int().optional(),
        error: z.string().optional().meta({ description: "Why it is not running, e.g. the port is in use" }),
      })
      .optional()
      .meta({ description: "Present when the server runs its own MQTT broker (no MQTT_URL); `mqtt` is `disabled` while it is unavailable" }),
    error: z.string().optional(),
  })
  .meta({ id: "Health" });

export default defineRoute({
  method: "GET",
  path: "/api/health",
  access: "public",
  summary: "Readiness: 200 while the database answers, 503 when it does not",
  tags: ["Operations"],
  responses: {
    200: { description: "Ready", content: { "application/json": { schema: healthSchema } } },
    503: { description: "Not ready", content: { "application/json": { schema: healthSchema } } },
  },
  uses: ["database", "notifier", "embeddedBroker", "logDatabaseOutage"],
  async handler(_request, { services }) {
    const { healthy, body } = await checkHealth(services);
    return json(body, healthy ? 200 : 503, { "cache-control": "no-store" });
  },
});
