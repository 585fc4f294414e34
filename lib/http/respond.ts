import { Response as FastResponse } from "@whatwg-node/fetch";
import { isDatabaseUnavailable } from "../db-errors.ts";
import { AppError, upstreamUnavailable } from "../errors.ts";

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return jsonText(JSON.stringify(body), status, { "content-type": "application/json; charset=utf-8", ...headers });
}

/**
 * JSON that is already text (e.g. a stored device config), sent verbatim. Built with the server adapter's own
 * Response class: @whatwg-node/server writes its text body straight to the socket, where a native Response costs
 * a body stream per request (test/bench/iot-config.bench.ts).
 */
export function jsonText(text: string, status = 200, headers: Record<string, string> = {}): Response {
  return new FastResponse(text, { status, headers: { "content-type": "application/json", ...headers } }) as unknown as Response;
}

export const noContent = () => new Response(null, { status: 204 });

/** The one place an error becomes a response (CONTRACT §1 envelope). Unknown errors never leak their text. */
export function errorResponse(error: unknown, requestId: string): Response {
  const known =
    error instanceof AppError ? error : isDatabaseUnavailable(error) ? upstreamUnavailable("database", "The database is not reachable right now; try again shortly.") : null;
  const status = known?.status ?? 500;
  const message = known?.message ?? "Something went wrong on our side. The error was logged.";
  return json(
    {
      ...(known?.oauthError ? { error: known.oauthError, error_description: message } : { error: message }),
      ...(known?.alsoAs ? { [known.alsoAs]: message } : {}),
      code: known?.code ?? "INTERNAL_ERROR",
      details: known?.details ?? null,
      correlationId: requestId,
    },
    status,
    known?.headers ?? {},
  );
}

/** A 302 (or, after a form post, 303) that browsers follow, with cookies to set; never cached (it carries per-login state). */
export function redirect(location: string, cookies: string[] = [], status: 302 | 303 = 302): Response {
  const headers = new Headers({ location, "cache-control": "no-store" });
  for (const cookie of cookies) headers.append("set-cookie", cookie);
  return new Response(null, { status, headers });
}
