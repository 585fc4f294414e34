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
export const isDeadlock = (error: unknown) => pgCode(error) === "40P01";

// Connection-level failures (server gone, database dropped, shutting down) and answers that did not come in time
// (statement timeout 57014, the driver's CONNECT_TIMEOUT, QUERY_TIMEOUT and the pool's QUEUE_TIMEOUT): the database is
// unavailable, not our bug.
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|57014|3D000)$/;
const DRIVER_CONNECTION_CODES = new Set(["CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "QUERY_TIMEOUT", "QUEUE_TIMEOUT"]);
// A socket failure says nothing of whom the socket was for: a fetch to the identity provider fails with the same codes.
const SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH"]);

/**
 * Whether an error means the database could not be reached or did not answer in time. A socket failure counts only
 * when it failed a query: the driver (postgres.js) gives every error it fails a query with a `query` property, and
 * drizzle's wrapper has one too.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  let failedQuery = false;
  for (let current = error; current && typeof current === "object"; current = (current as { cause?: unknown }).cause) {
    failedQuery ||= "query" in current;
    const code = (current as { code?: unknown }).code;
    if (typeof code !== "string") continue;
    if (UNAVAILABLE_SQLSTATE.test(code) || DRIVER_CONNECTION_CODES.has(code)) return true;
    if (failedQuery && SOCKET_CODES.has(code)) return true;
  }
  return false;
}
