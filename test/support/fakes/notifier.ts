/** A Notifier that records what it would publish; `broker.up = false` is a broker outage. */
import type { Notifier, NoticeKind } from "../../../lib/mqtt.ts";

export type Notice = { kind: NoticeKind; clientId: string; payload: Record<string, unknown> };
export type FakeNotifier = Notifier & { broker: { up: boolean }; delivered: Notice[] };

export function fakeNotifier(): FakeNotifier {
  const broker = { up: true };
  const delivered: Notice[] = [];
  return {
    broker,
    delivered,
    state: () => (broker.up ? "connected" : "disconnected"),
    waitUntilConnected: async () => broker.up,
    async publish(kind, clientId, payload) {
      // As the real one: never queued while the broker is down, and it never throws.
      if (!broker.up) return false;
      delivered.push({ kind, clientId, payload: { client_id: clientId, ...payload } });
      return true;
    },
    async close() {},
  };
}
