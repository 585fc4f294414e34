/**
 * The bounded buffer between ingest and the database: lines are written in batches (every `flushMs`, or at once when
 * `batchLines` are waiting), one write at a time. While the database is down the lines stay and the writes back off;
 * the buffer never holds more than `capacity` lines. MQTT waits for room (so the broker keeps the rest of its session
 * queue); HTTP is refused when there is none (503, the device sends again).
 */
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { DeviceLogMetrics } from "./metrics.ts";
import type { StoredLine } from "./store.ts";

const MAX_BACKOFF_MS = 30_000;
/** Lines per write at most: a backlog after an outage is written in steps of this size. */
const MAX_WRITE_LINES = 5_000;

/** A line before it is stamped: the writer stamps lines as it takes them, so a stamped line is always in its buffer. */
export type NewLine = Omit<StoredLine, "stampUs">;

export type LogWriter = {
  /** Adds the lines when all fit; false (nothing added) when the buffer is too full. */
  offer(lines: NewLine[]): boolean;
  /** Adds the lines once they fit (they are at most `capacity`). */
  add(lines: NewLine[]): Promise<void>;
  /** The oldest stamp (µs) not yet stored, or null when nothing waits: lines before it are all readable. */
  oldestPendingUs(): number | null;
  /** Writes everything waiting now; rejects if the database refuses. */
  flush(): Promise<void>;
  close(): Promise<void>;
};

export function createLogWriter(options: {
  write(lines: StoredLine[]): Promise<void>;
  capacity: number;
  batchLines: number;
  flushMs: number;
  metrics: DeviceLogMetrics;
  logger: Logger;
  logDatabaseOutage(error: unknown): void;
}): LogWriter {
  const { metrics, logger } = options;
  let pending: StoredLine[] = [];
  let writing: StoredLine[] = [];
  let failures = 0;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let closed = false;
  const waiters: (() => void)[] = [];

  const held = () => pending.length + writing.length;
  const gauge = () => metrics.buffered.set(held());
  const wakeWaiters = () => {
    while (waiters.length > 0 && held() < options.capacity) waiters.shift()!();
  };

  function schedule(delayMs: number) {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = null;
      void writeOnce().catch(() => {});
    }, delayMs);
    timer.unref();
  }

  async function writeBatch() {
    writing = pending.slice(0, MAX_WRITE_LINES);
    pending = pending.slice(writing.length);
    const stop = metrics.writeDuration.startTimer();
    try {
      await options.write(writing);
      stop();
      metrics.written.inc(writing.length);
      failures = 0;
      writing = [];
    } catch (error) {
      if (isDatabaseUnavailable(error)) {
        options.logDatabaseOutage(error);
        pending = writing.concat(pending);
      } else {
        // Not an outage: the batch itself was refused, and would be again. Dropped, so the lines after it go on.
        metrics.dropped.inc({ reason: "write_failed" }, writing.length);
        logger.error("Device log lines could not be stored", { lines: writing.length, error: errorMessage(error) });
      }
      writing = [];
      failures++;
      throw error;
    } finally {
      gauge();
      wakeWaiters();
    }
  }

  /** Writes until the buffer is empty; after a failure, tries again later (backing off). */
  function writeOnce(): Promise<void> {
    running ??= (async () => {
      while (pending.length > 0) await writeBatch();
    })()
      .catch((error: unknown) => {
        if (pending.length > 0) schedule(Math.min(options.flushMs * 2 ** failures, MAX_BACKOFF_MS));
        throw error;
      })
      .finally(() => {
        running = null;
      });
    return running;
  }

  // Stamps in microseconds, strictly increasing: lines keep the order they arrived in, and no two share a time.
  let lastStampUs = 0;
  function push(lines: NewLine[]) {
    for (const line of lines) {
      lastStampUs = Math.max(Date.now() * 1000, lastStampUs + 1);
      pending.push({ ...line, stampUs: lastStampUs });
    }
    gauge();
    if (failures > 0) return; // backing off: the scheduled retry writes them
    if (pending.length >= options.batchLines) {
      if (timer) clearTimeout(timer), (timer = null);
      void Promise.resolve().then(() => writeOnce().catch(() => {}));
    } else schedule(options.flushMs);
  }

  return {
    offer(lines) {
      if (held() + lines.length > options.capacity) {
        metrics.dropped.inc({ reason: "buffer_full" }, lines.length);
        return false;
      }
      push(lines);
      return true;
    },
    async add(lines) {
      while (held() + lines.length > options.capacity && !closed) await new Promise<void>((resolve) => waiters.push(resolve));
      push(lines);
    },
    oldestPendingUs: () => writing[0]?.stampUs ?? pending[0]?.stampUs ?? null,
    async flush() {
      if (running) await running.catch(() => {});
      if (pending.length > 0) await writeOnce();
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await this.flush().catch((error) => logger.warn("Device log lines not stored at shutdown", { lines: held(), error: errorMessage(error) }));
      for (const wake of waiters.splice(0)) wake();
    },
  };
}
