/**
 * Keeping stored device data bounded (docs/device-logs.md, "Retention"): run by `node dist/cli.js retention-job`
 * (a CronJob) or, with RETENTION_SCHEDULER=internal, on a timer in the server. Both at once do no harm: each step only
 * removes what is over its limit at that moment.
 */
import type { Services } from "./context.ts";
import { startPeriodicJob } from "./periodic-job.ts";

export async function runRetention({ deviceLogs, coreDumps }: Pick<Services, "deviceLogs" | "coreDumps">) {
  return { device_logs: await deviceLogs.runRetention(), core_dumps: { deleted: await coreDumps.runRetention() } };
}

export function startRetentionTimer(services: Pick<Services, "deviceLogs" | "coreDumps" | "logger" | "logDatabaseOutage">, intervalSeconds: number): () => Promise<void> {
  const apply = async () => services.logger.debug("Retention applied", await runRetention(services));
  return startPeriodicJob("Retention", apply, services, intervalSeconds);
}
