import { errorMessage, type Logger } from "./logger.ts";

const EVERY_MS = 60_000;

/**
 * While the database is out, every request that needs it fails the same way: one warning says so, then at most one
 * line a minute with the number of failures in between, instead of a line per request.
 */
export function createDatabaseOutageLog(logger: Logger): (error: unknown, fields?: Record<string, unknown>) => void {
  let loggedAt = Number.NEGATIVE_INFINITY;
  let unlogged = 0;
  return (error, fields = {}) => {
    const now = performance.now();
    if (now - loggedAt < EVERY_MS) {
      unlogged++;
      return;
    }
    logger.warn("The database is unavailable; what needs it answers 503 until it is back", {
      error: errorMessage(error),
      ...(unlogged > 0 && { failures_since_last_line: unlogged }),
      ...fields,
    });
    loggedAt = now;
    unlogged = 0;
  };
}
