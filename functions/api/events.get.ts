import { z } from "zod";
import { eventStreamResponse } from "../../lib/http/event-stream.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { idParams } from "../../lib/schemas.ts";

const decimal = z.string().regex(/^[0-9]{1,15}$/, "must be a whole number written in decimal digits").transform(Number);

const eventsQuery = z.object({
  device_id: idParams.shape.id.optional().meta({ description: "Only events about this device", example: "1" }),
  types: z
    .string()
    .regex(/^[a-z.]+(,[a-z.]+)*$/, "must be event types separated by commas, e.g. device.logs,rotation.state")
    .optional()
    .meta({ description: "Only these event types (comma-separated)" }),
  last_event_id: decimal.optional().meta({ description: "Resume after this event id (what the Last-Event-ID header says; the header wins)" }),
});

export default defineRoute({
  method: "GET",
  path: "/api/events",
  access: "admin",
  summary: "Live events as Server-Sent Events",
  description:
    "Event types: `device.logs` ({device_id, lines: [{timestamp, message}]}), `device.checkin`, `rotation.state` ({device_id, key, from, to}), " +
    "`device.created`, `device.updated`, `device.deleted`, `model.created`, `model.updated`, `model.deleted`; every event has an `id`. " +
    "Reconnect with `Last-Event-ID` to get what was missed within EVENTS_REPLAY_SECONDS (a `reset` event says when that is not " +
    "possible). Events from every replica. A comment line every EVENTS_HEARTBEAT_SECONDS; a client that does not read is disconnected.",
  tags: ["Device logs"],
  request: { query: eventsQuery },
  responses: { 200: { description: "The event stream", content: { "text/event-stream": { schema: { type: "string" } } } } },
  uses: ["config", "events", "deviceLogMetrics"],
  async handler(request, { services, query, logger }) {
    const header = request.headers.get("last-event-id");
    // A malformed header is ignored (a browser's EventSource sends whatever id it last saw), not refused.
    const fromHeader = header === null ? null : (decimal.safeParse(header.trim()).data ?? null);
    const types = query.types ? new Set(query.types.split(",")) : null;
    return eventStreamResponse({
      hub: services.events,
      lastEventId: fromHeader ?? query.last_event_id ?? null,
      matches: (event) => (!types || types.has(event.type)) && (query.device_id === undefined || event.payload.device_id === query.device_id),
      heartbeatMs: services.config.EVENTS_HEARTBEAT_SECONDS * 1000,
      maxBufferedBytes: services.config.EVENTS_CLIENT_BUFFER_BYTES,
      signal: request.signal,
      clients: services.deviceLogMetrics.eventClients,
      dropped: services.deviceLogMetrics.eventClientsDropped,
      logger,
    });
  },
});
