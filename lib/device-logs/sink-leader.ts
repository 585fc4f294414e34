/**
 * One log subscriber for the whole installation: the MQTT session is persistent and has one client id, and two
 * replicas with one id would take it from each other in turn. The replica that holds a PostgreSQL advisory lock runs
 * the subscriber; when it stops or loses its database connection, another takes the lock (checked every
 * LEADER_CHECK_MS) and the same session, with what the broker queued meanwhile. DEVICE_LOG_MQTT_SHARE_GROUP turns this
 * off: then every replica subscribes, each with its own client id, and the broker shares the messages.
 */
import type { DatabaseHandle } from "../../db/client.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { LogSink } from "./mqtt-sink.ts";

export const LOG_SINK_LOCK_ID = 7_341_015;
const LEADER_CHECK_MS = 10_000;

export function runSinkWhileLeader(deps: { database: DatabaseHandle; start(): Promise<LogSink>; logger: Logger }): { close(): Promise<void> } {
  const lock = deps.database.advisoryLock(LOG_SINK_LOCK_ID);
  let sink: LogSink | null = null;
  let closed = false;
  let checking: Promise<void> = Promise.resolve();
  const check = async () => {
    const leader = await lock.held().catch((error) => {
      deps.logger.warn("Could not check the device log subscriber's lock", { error: errorMessage(error) });
      return false;
    });
    if (closed) return;
    if (leader && !sink) {
      deps.logger.info("This process runs the device log subscriber");
      const started = await deps.start();
      // Closed while it connected: it is not kept.
      if (closed) return void (await started.close());
      sink = started;
    } else if (!leader && sink) {
      deps.logger.warn("Device log subscriber stopped: another process holds its lock now");
      await sink.close();
      sink = null;
    }
  };
  const timer = setInterval(() => (checking = checking.then(check)), LEADER_CHECK_MS);
  timer.unref();
  checking = check();
  return {
    async close() {
      closed = true;
      clearInterval(timer);
      await checking;
      await sink?.close();
      await lock.release().catch(() => {});
    },
  };
}
