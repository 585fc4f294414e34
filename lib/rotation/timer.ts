import type { Services } from "../context.ts";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { errorMessage } from "../logger.ts";

/**
 * Without a Kubernetes CronJob (ROTATION_SCHEDULER=internal) the server runs the rotation cycle itself. Cycles never
 * overlap within the process; between processes the database keeps them safe.
 */
export function startRotationTimer(
  { rotation, logger, logDatabaseOutage }: Pick<Services, "rotation" | "logger" | "logDatabaseOutage">,
  intervalSeconds: number,
): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    running = rotation
      .runCycle()
      .catch((error) => (isDatabaseUnavailable(error) ? logDatabaseOutage(error) : logger.error("Rotation cycle failed", { error: errorMessage(error) })))
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
