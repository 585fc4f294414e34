import { AsyncLocalStorage } from "node:async_hooks";
import { DrizzleQueryError } from "drizzle-orm";

/** Structured JSON log lines, on stdout unless `write` says otherwise. Callers pass fields, never secrets. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type Logger = {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
};

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

const requestContext = new AsyncLocalStorage<{ request_id: string }>();

/** Runs `work` so that every line logged during it, by any service, carries this request id. */
export const withRequestId = <T>(requestId: string, work: () => T): T => requestContext.run({ request_id: requestId }, work);

export function createLogger(
  level: LogLevel = "info",
  base: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stdout.write(line + "\n"),
): Logger {
  const log = (at: Exclude<LogLevel, "silent">) => (message: string, fields: Record<string, unknown> = {}) => {
    if (rank[at] < rank[level]) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: at, message, ...requestContext.getStore(), ...base, ...fields }));
  };
  return {
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
  };
}

/**
 * The message of an unknown thrown value, for logs only (never for response bodies). A failed query's own message
 * lists its parameters (device configs, names, client ids): its SQL and the driver's reason are given instead.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof DrizzleQueryError) return `Failed query: ${error.query} (${queryFailure(error.cause)})`;
  return error instanceof Error ? error.message : String(error);
}

/** Why a query failed. PostgreSQL's data exceptions (SQLSTATE class 22) quote the offending value: only the code. */
function queryFailure(cause: unknown): string {
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && code.startsWith("22") ? `SQLSTATE ${code}` : errorMessage(cause);
}

/** The stack frames of an error without its first lines, which repeat the message (see errorMessage). */
export const errorStack = (error: unknown) =>
  error instanceof Error ? error.stack?.split("\n").filter((line) => /^\s+at /.test(line)).join("\n") : undefined;
