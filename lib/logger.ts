import { DrizzleQueryError } from "drizzle-orm";
import { pino } from "pino";
import { createAsyncScope } from "./async-scope.ts";
import { prettyLine } from "./pretty-log.ts";

/** Structured JSON log lines (pino), on stdout unless `write` says otherwise. Callers pass fields, never secrets. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type LogFormat = "json" | "pretty";
export type Logger = {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
};

// Should a secret reach a log call all the same, at the top of the fields or one level down, it is censored.
const SECRET_FIELDS = ["password", "secret", "client_secret", "token", "access_token", "refresh_token", "authorization", "cookie"];

const requestContext = createAsyncScope<{ request_id: string }>();

/**
 * Runs `work` so that every line logged during it, by any service, carries this request id (lib/async-scope.ts:
 * the device routes, the hot path, do without it and pass requestLogger where a service's lines should carry it).
 */
export const withRequestId = <T>(requestId: string, work: () => Promise<T>): Promise<T> => requestContext.run({ request_id: requestId }, work);

/** `logger` with the request id on every line (a class: one small object per request, its methods shared). */
class RequestLogger implements Logger {
  constructor(
    private readonly logger: Logger,
    private readonly requestId: string,
  ) {}
  debug(message: string, fields?: Record<string, unknown>) {
    this.logger.debug(message, { request_id: this.requestId, ...fields });
  }
  info(message: string, fields?: Record<string, unknown>) {
    this.logger.info(message, { request_id: this.requestId, ...fields });
  }
  warn(message: string, fields?: Record<string, unknown>) {
    this.logger.warn(message, { request_id: this.requestId, ...fields });
  }
  error(message: string, fields?: Record<string, unknown>) {
    this.logger.error(message, { request_id: this.requestId, ...fields });
  }
}

export const requestLogger = (logger: Logger, requestId: string): Logger => new RequestLogger(logger, requestId);

/** How to write logs to a stream: LOG_FORMAT when set, else readable in a terminal and JSON anywhere else. */
export const logFormatFor = (stream: { isTTY?: boolean }, configured?: LogFormat): LogFormat => configured ?? (stream.isTTY ? "pretty" : "json");

export function createLogger(
  level: LogLevel = "info",
  base: Record<string, unknown> = {},
  write?: (line: string) => void,
  format: LogFormat = "json",
): Logger {
  // Synchronous, so a line is out before the process exits and a test's writer holds it as soon as it is logged.
  const destination = write ? { write: (line: string) => write(line.slice(0, -1)) } : pino.destination({ dest: 1, sync: true });
  const stream = format === "pretty" ? { write: (line: string) => destination.write(`${prettyLine(line)}\n`) } : destination;
  const log = pino(
    {
      level,
      base,
      messageKey: "message",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: () => requestContext.get() ?? {},
      redact: { paths: SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]), censor: "[redacted]" },
    },
    stream,
  );
  return {
    debug: (message, fields = {}) => log.debug(fields, message),
    info: (message, fields = {}) => log.info(fields, message),
    warn: (message, fields = {}) => log.warn(fields, message),
    error: (message, fields = {}) => log.error(fields, message),
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
