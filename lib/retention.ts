/**
 * Keeping stored device data bounded (docs/device-logs.md, "Retention"): run by `node dist/cli.js retention-job`
 * (a CronJob) or, with RETENTION_SCHEDULER=internal, on a timer in the server. Both at once do no harm: each step only
 * removes what is over its limit at that moment.
 */
import type { Services } from "./context.ts";
import { isDatabaseUnavailable } from "./db-errors.ts";
import { errorMessage } from "./logger.ts";

export async function runRetention({ deviceLogs, coreDumps }: Pick<Services, "deviceLogs" | "coreDumps">) {
  return { device_logs: await deviceLogs.runRetention(), core_dumps: { deleted: await coreDumps.runRetention() } };
}

export function startRetentionTimer(services: Pick<Services, "deviceLogs" | "coreDumps" | "logger" | "logDatabaseOutage">, intervalSeconds: number): () => Promise<void> {
  const { logger, logDatabaseOutage } = services;
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    running = runRetention(services)
      .then((summary) => logger.debug("Retention applied", summary))
      .catch((error) => (isDatabaseUnavailable(error) ? logDatabaseOutage(error) : logger.error("Retention failed", { error: errorMessage(error) })))
      .finally(() => {
        busy = false;
      });
  };
  const timer = setInterval(tick, intervalSeconds * 1000);
  timer.unref();
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
