/** PostgreSQL error codes we turn into domain errors; drizzle wraps driver errors, so look at the cause too. */
function pgCode(error: unknown): string | undefined {
  for (let current = error; current && typeof current === "object"; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

export const isUniqueViolation = (error: unknown) => pgCode(error) === "23505";
export const isForeignKeyViolation = (error: unknown) => pgCode(error) === "23503";

// Connection-level failures (server gone, database dropped, shutting down) and answers that did not come in time
// (statement timeout 57014, the pool's QUERY_TIMEOUT and QUEUE_TIMEOUT): the database is unavailable, not our bug.
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|57014|3D000)$/;
const UNAVAILABLE_DRIVER_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "QUERY_TIMEOUT",
  "QUEUE_TIMEOUT",
]);

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error; current && typeof current === "object"; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_DRIVER_CODES.has(code))) return true;
  }
  return false;
}
