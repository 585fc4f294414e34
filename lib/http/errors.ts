/** Typed domain errors. Thrown anywhere; turned into the error envelope in exactly one place (lib/http/respond.ts). */
export type FieldError = { field: string; message: string };

export class AppError extends Error {
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

export const badRequest = (message: string, code = "BAD_REQUEST", details: Record<string, unknown> | null = null) =>
  new AppError(400, code, message, details);

export const validationFailed = (errors: FieldError[], message = "The request is not valid.") =>
  new AppError(400, "VALIDATION_FAILED", message, { errors });

export const unauthorized = (message = "Authentication is required.", code = "UNAUTHORIZED") =>
  new AppError(401, code, message, null, { "WWW-Authenticate": 'Bearer realm="iotsupport"' });

export const forbidden = (message = "You are not allowed to do this.") => new AppError(403, "FORBIDDEN", message);

export const notFound = (message = "Not found.", code = "NOT_FOUND") => new AppError(404, code, message);

export const conflict = (message: string, code = "CONFLICT") => new AppError(409, code, message);

/** An upstream (identity provider, broker) answered with an error: 502. */
export const upstreamError = (service: string, message: string) =>
  new AppError(502, "UPSTREAM_ERROR", message, { service });

/** An upstream could not be reached at all: 503. */
export const upstreamUnavailable = (service: string, message: string) =>
  new AppError(503, "UPSTREAM_UNAVAILABLE", message, { service });
