import { logIngestSchema } from "../../lib/device-logs/schemas.ts";
import { readTextBody } from "../../lib/http/body.ts";
import { devicePrincipal } from "../../lib/identity/principal.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";

const MEDIA_TYPES = ["application/x-ndjson", "application/jsonl", "application/json", "text/plain"];

export default defineRoute({
  method: "POST",
  path: "/iot/logs",
  access: "device",
  summary: "The calling device sends log lines",
  description:
    "NDJSON (one JSON object a line) or a JSON array of objects; each needs a string `message` (ANSI colour codes are removed), " +
    "other fields are kept as attributes. The lines are the token's device's; an `entity_id` in them is ignored. The server's " +
    "receive time is each line's timestamp. Bad lines are skipped and counted (`rejected`), the good ones stored. Limits: " +
    "DEVICE_LOG_MAX_REQUEST_BYTES and DEVICE_LOG_MAX_LINES_PER_REQUEST (413), DEVICE_LOG_RATE_LINES_PER_SECOND per device " +
    "(429 with Retry-After); 503 with Retry-After while the server's buffer is full.",
  tags: ["Device API"],
  request: {
    rawBody: {
      description: "Log lines as NDJSON or a JSON array",
      content: Object.fromEntries(MEDIA_TYPES.map((type) => [type, { schema: { type: "string" } }])),
    },
  },
  responses: {
    202: { description: "Taken: the good lines are stored shortly", content: { "application/json": { schema: logIngestSchema } } },
  },
  uses: ["config", "deviceLogs"],
  async handler(request, { services, principal }) {
    const { device } = devicePrincipal(principal);
    const text = await readTextBody(request, services.config.DEVICE_LOG_MAX_REQUEST_BYTES, MEDIA_TYPES);
    return json(services.deviceLogs.ingestHttp(device.id, text), 202);
  },
});
