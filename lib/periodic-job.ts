import type { Services } from "./context.ts";
import { isDatabaseUnavailable } from "./db-errors.ts";
import { errorMessage } from "./logger.ts";

/**
 * Without a Kubernetes CronJob (ROTATION_SCHEDULER=internal) the server runs the rotation cycle and the rollout step
 * itself. Runs of one job never overlap within the process; between processes the database keeps them safe.
 */
export function startPeriodicJob(
  what: string,
  run: () => Promise<unknown>,
  { logger, logDatabaseOutage }: Pick<Services, "logger" | "logDatabaseOutage">,
  intervalSeconds: number,
): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    running = run()
      .catch((error) => (isDatabaseUnavailable(error) ? logDatabaseOutage(error) : logger.error(`${what} failed`, { error: errorMessage(error) })))
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

/** The rotation cycle and the rollout step, each on its own period; the returned function stops both. */
export function startInternalScheduler(services: Pick<Services, "config" | "rotation" | "rollouts" | "logger" | "logDatabaseOutage">): () => Promise<void> {
  const { config } = services;
  const stops = [
    startPeriodicJob("Rotation cycle", () => services.rotation.runCycle(), services, config.ROTATION_INTERVAL_SECONDS),
    startPeriodicJob("Rollout step", () => services.rollouts.tick(), services, config.ROLLOUT_INTERVAL_SECONDS),
  ];
  return async () => void (await Promise.all(stops.map((stop) => stop())));
}

/** How often a server renders the rotation dashboard's chunks that are no longer fresh. */
const DASHBOARD_RENDER_INTERVAL_SECONDS = 2;

/**
 * Keeps the whole rotation dashboard ready (lib/rotation/dashboard.ts): every server runs it, whatever the scheduler,
 * and one renders at a time. At 100,000 devices a day turns for about one device a second, so a chunk or two a tick.
 */
export function startDashboardRendering(services: Pick<Services, "rotation" | "logger" | "logDatabaseOutage">): () => Promise<void> {
  return startPeriodicJob("Dashboard rendering", () => services.rotation.refreshDashboard(new Date()), services, DASHBOARD_RENDER_INTERVAL_SECONDS);
}
