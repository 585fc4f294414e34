/**
 * The live events of GET /api/events (docs/events.md). Every event is a row of `events` (written by triggers on devices
 * and device_models and by the device-log writer, in the transaction that made it) followed by NOTIFY iot_events, so a
 * client of any replica sees what any replica did. The hub LISTENs, reads the rows it has not delivered yet and hands
 * them to its subscribers; a reconnecting client replays the rows after its Last-Event-ID within the replay window.
 */
import { and, asc, gt, gte, lt, min, sql } from "drizzle-orm";
import type { DatabaseHandle } from "../../db/client.ts";
import { events } from "../../db/schema.ts";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage, type Logger } from "../logger.ts";

export type LiveEvent = { id: number; type: string; at: string; payload: Record<string, unknown> };

/** `incomplete`: events after the given id may have left the replay window already (the client should reload what it shows). */
export type Replay = { events: LiveEvent[]; incomplete: boolean };

export type EventListener = { events(batch: LiveEvent[]): void; /** The hub is closing (the server stops). */ closed(): void };

export type EventHub = {
  /** Calls `listener` with every new event (ids increasing within a call, a late one may follow); returns the way to stop. */
  subscribe(listener: EventListener): () => void;
  /** The events after `afterId` still within the replay window, oldest first. */
  replay(afterId: number): Promise<Replay>;
  close(): Promise<void>;
};

const CHANNEL = "iot_events";
/** Rows read per query; more wait for the next round, which follows at once. */
const PAGE = 1000;
/** Read without a notice too, in case one was missed (a reconnecting LISTEN connection). */
const POLL_MS = 2000;
/**
 * A missing id (a transaction that took its id from the sequence but has not committed) is waited for this long,
 * then given up (it rolled back: sequences do not roll back).
 */
const GAP_MS = 5000;
const PRUNE_EVERY_MS = 60_000;
/** Most events one reconnect replays. */
const REPLAY_LIMIT = 10_000;

const live = (row: typeof events.$inferSelect): LiveEvent => ({ id: row.id, type: row.type, at: row.at.toISOString(), payload: row.payload });

export function createEventHub(deps: { database: DatabaseHandle; replaySeconds: number; logger: Logger; logDatabaseOutage(error: unknown): void }): EventHub {
  const { db } = deps.database;
  const listeners = new Set<EventListener>();
  let started: Promise<void> | null = null;
  let stopListening: (() => Promise<void>) | null = null;
  let timers: NodeJS.Timeout[] = [];
  /** Every id up to here was delivered (or given up); above it, `delivered` holds what was. */
  let cursor = 0;
  const delivered = new Set<number>();
  const gapsSince = new Map<number, number>();
  let reading: Promise<void> | null = null;
  let again = false;

  async function readNew() {
    const rows = await db.select().from(events).where(gt(events.id, cursor)).orderBy(asc(events.id)).limit(PAGE);
    const fresh = rows.filter((row) => !delivered.has(row.id));
    for (const row of fresh) delivered.add(row.id);
    // Move the cursor over what was delivered and over gaps waited for long enough.
    const now = performance.now();
    const highest = rows.at(-1)?.id ?? cursor;
    while (cursor < highest) {
      const next = cursor + 1;
      if (delivered.delete(next)) cursor = next;
      else if (now - (gapsSince.get(next) ?? (gapsSince.set(next, now), now)) > GAP_MS) {
        gapsSince.delete(next);
        cursor = next;
      } else break;
    }
    if (fresh.length > 0) {
      const batch = fresh.map(live);
      for (const listener of listeners) listener.events(batch);
    }
    if (rows.length === PAGE) again = true;
  }

  function wake() {
    if (reading) {
      again = true;
      return;
    }
    reading = readNew()
      .catch((error) => (isDatabaseUnavailable(error) ? deps.logDatabaseOutage(error) : deps.logger.warn("Reading live events failed", { error: errorMessage(error) })))
      .finally(() => {
        reading = null;
        if (again) {
          again = false;
          wake();
        }
      });
  }

  async function prune() {
    await db.delete(events).where(lt(events.at, new Date(Date.now() - deps.replaySeconds * 1000)));
  }

  function start() {
    started ??= (async () => {
      const [last] = await db.select({ id: sql<number>`coalesce(max(${events.id}), 0)::bigint` }).from(events);
      cursor = Number(last?.id ?? 0);
      stopListening = await deps.database.listen(CHANNEL, wake);
      timers = [
        setInterval(wake, POLL_MS),
        setInterval(() => void prune().catch((error) => deps.logger.warn("Pruning live events failed", { error: errorMessage(error) })), PRUNE_EVERY_MS),
      ];
      for (const timer of timers) timer.unref();
    })().catch((error) => {
      started = null;
      throw error;
    });
    return started;
  }

  return {
    subscribe(listener) {
      listeners.add(listener);
      void start().catch((error) => deps.logger.warn("Live events unavailable", { error: errorMessage(error) }));
      return () => listeners.delete(listener);
    },
    async replay(afterId) {
      const windowStart = new Date(Date.now() - deps.replaySeconds * 1000);
      const [oldest] = await db.select({ id: min(events.id) }).from(events).where(gte(events.at, windowStart));
      const rows = await db
        .select()
        .from(events)
        .where(and(gt(events.id, afterId), gte(events.at, windowStart)))
        .orderBy(asc(events.id))
        .limit(REPLAY_LIMIT);
      // Ids before the window's first are gone (or never were): from further back, nothing proves no event was missed.
      const first = oldest?.id == null ? null : Number(oldest.id);
      // A replay cut at its limit would leave a hole before the live events: said the same way.
      return { events: rows.map(live), incomplete: (first !== null && afterId + 1 < first) || rows.length === REPLAY_LIMIT };
    },
    async close() {
      for (const timer of timers) clearInterval(timer);
      for (const listener of [...listeners]) listener.closed();
      listeners.clear();
      await stopListening?.().catch(() => {});
    },
  };
}
