/** Typed domain errors. Thrown anywhere; turned into the error envelope in exactly one place (lib/http/respond.ts). */
export type FieldError = { field: string; message: string };

export class AppError extends Error {
  /** OAuth2 error code (RFC 6749 §5.2) of token-endpoint errors: rendered as `error`, the sentence as `error_description`. */
  oauthError?: string;
  /** The sentence once more under another name, for a client that reads it there (the web UI's test suite: `message`). */
  alsoAs?: string;

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** RFC 6749 §5.2, and temporarily_unavailable for limits and an unreachable upstream token endpoint. */
export const OAUTH_ERROR_CODES = [
  "invalid_request",
  "invalid_client",
  "invalid_grant",
  "unauthorized_client",
  "unsupported_grant_type",
  "invalid_scope",
  "temporarily_unavailable",
] as const;
export type OAuthErrorCode = (typeof OAUTH_ERROR_CODES)[number];

/** An error of the OAuth2 token endpoint, shaped as OAuth2 clients expect and still in the envelope. */
export function oauthError(
  status: number,
  error: OAuthErrorCode,
  message: string,
  extra: { code?: string; details?: Record<string, unknown>; headers?: Record<string, string> } = {},
) {
  const challenge: Record<string, string> = error === "invalid_client" ? { "WWW-Authenticate": 'Basic realm="iotsupport"' } : {};
  const headers = { "cache-control": "no-store", ...challenge, ...extra.headers };
  const appError = new AppError(status, extra.code ?? error.toUpperCase(), message, extra.details ?? null, headers);
  appError.oauthError = error;
  return appError;
}

export const badRequest = (message: string, code = "BAD_REQUEST", details: Record<string, unknown> | null = null) =>
  new AppError(400, code, message, details);

export const validationFailed = (errors: FieldError[], message = "The request is not valid.") =>
  new AppError(400, "VALIDATION_FAILED", message, { errors });

export const unauthorized = (message = "Authentication is required.", code = "UNAUTHORIZED") =>
  new AppError(401, code, message, null, { "WWW-Authenticate": 'Bearer realm="iotsupport"' });

export const forbidden = (message = "You are not allowed to do this.") => new AppError(403, "FORBIDDEN", message);

export const notFound = (message = "Not found.", code = "NOT_FOUND") => new AppError(404, code, message);

export const deviceNotFound = (id: number) => notFound(`Device ${id} was not found.`, "DEVICE_NOT_FOUND");
export const modelNotFound = (id: number) => notFound(`Device model ${id} was not found.`, "DEVICE_MODEL_NOT_FOUND");

export const conflict = (message: string, code = "CONFLICT") => new AppError(409, code, message);

/** An upstream (identity provider, broker) answered with an error: 502. */
export const upstreamError = (service: string, message: string) =>
  new AppError(502, "UPSTREAM_ERROR", message, { service });

/** Outages seen so far last seconds to minutes; a client that comes back sooner only adds to the load. */
const RETRY_AFTER_SECONDS = 5;

/** An upstream could not be reached at all: 503, with when to try again. */
export const upstreamUnavailable = (service: string, message: string) =>
  new AppError(503, "UPSTREAM_UNAVAILABLE", message, { service }, { "retry-after": String(RETRY_AFTER_SECONDS) });
