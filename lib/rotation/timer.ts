import { errorMessage, type Logger } from "../logger.ts";
import type { RotationService } from "./service.ts";

/**
 * Without a Kubernetes CronJob (ROTATION_SCHEDULER=internal) the server runs the rotation cycle itself. Cycles never
 * overlap within the process; between processes the database keeps them safe.
 */
export function startRotationTimer(rotation: RotationService, intervalSeconds: number, logger: Logger): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    running = rotation
      .runCycle()
      .catch((error) => logger.error("Rotation cycle failed", { error: errorMessage(error) }))
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
