/**
 * A Server-Sent Events response over the event hub (GET /api/events): the events after Last-Event-ID within the replay
 * window first, then live ones, each with its id; a comment line as heartbeat so proxies keep an idle stream open. A
 * client that does not read is cut off once `maxBufferedBytes` wait for it (nothing more is queued for it and its
 * stream ends), so it cannot grow the server's memory.
 */
import type { EventHub, LiveEvent } from "../events/hub.ts";
import type { Logger } from "../logger.ts";

const encoder = new TextEncoder();
const frame = (event: LiveEvent) => `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify({ ...event.payload, at: event.at })}\n\n`;

export function eventStreamResponse(options: {
  hub: EventHub;
  lastEventId: number | null;
  matches(event: LiveEvent): boolean;
  heartbeatMs: number;
  maxBufferedBytes: number;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  clients: { inc(): void; dec(): void };
  dropped: { inc(): void };
  logger: Logger;
}): Response {
  const { hub, matches } = options;
  let cleanup = () => {};
  const stream = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        let open = true;
        const stop = () => {
          if (!open) return;
          open = false;
          unsubscribe();
          clearInterval(heartbeat);
          options.signal.removeEventListener("abort", stop);
          options.clients.dec();
        };
        options.clients.inc();
        options.signal.addEventListener("abort", stop);
        const write = (text: string) => {
          if (!open) return;
          controller.enqueue(encoder.encode(text));
          if ((controller.desiredSize ?? 0) < 0) {
            // Nothing more is queued for it: what waits is sent if it ever reads, then the stream ends.
            options.logger.warn("Live event client dropped: it does not read fast enough", { buffered_limit_bytes: options.maxBufferedBytes });
            options.dropped.inc();
            stop();
            controller.close();
          }
        };
        const send = (batch: LiveEvent[]) => {
          for (const event of batch) if (matches(event)) write(frame(event));
        };
        // Live events are held while the replay is read, then sent after it without the ones it already had; the hub
        // may also bring one the replay had later, after the hand-over, so the replayed ids are kept.
        let held: LiveEvent[] | null = [];
        let replayed = new Set<number>();
        const unsubscribe = hub.subscribe({
          events: (batch) => (held ? held.push(...batch) : send(batch.filter((event) => !replayed.has(event.id)))),
          closed: () => {
            stop();
            controller.close();
          },
        });
        const heartbeat = setInterval(() => write(": keep-alive\n\n"), options.heartbeatMs);
        heartbeat.unref();
        cleanup = stop;
        write("retry: 2000\n: connected\n\n");
        const replay = options.lastEventId === null ? Promise.resolve({ events: [], incomplete: false }) : hub.replay(options.lastEventId);
        replay.then(
          ({ events, incomplete }) => {
            if (incomplete) write(`event: reset\ndata: ${JSON.stringify({ reason: "events after your Last-Event-ID are no longer kept; reload what you show" })}\n\n`);
            send(events);
            replayed = new Set(events.map((event) => event.id));
            const waiting = held ?? [];
            held = null;
            send(waiting.filter((event) => !replayed.has(event.id) && (options.lastEventId === null || event.id > options.lastEventId)));
          },
          (error) => {
            options.logger.warn("Live event replay failed", { error: String(error) });
            stop();
            controller.error(error);
          },
        );
      },
      cancel() {
        cleanup();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: options.maxBufferedBytes }),
  );
  return new Response(stream, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" },
  });
}
