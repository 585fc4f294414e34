import { AppError } from "../errors.ts";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function refused(origin: string | null) {
  const source =
    origin === null
      ? "this request did not say where it came from"
      : origin === "null"
        ? "this request came from a page without an origin of its own (Origin: null)"
        : `this request came from ${origin}`;
  return new AppError(403, "CSRF_ORIGIN_REFUSED", `A signed-in browser may change things only from the web UI's own origin, and ${source}.`, { origin });
}

/**
 * Refuses a request that changes state (any method but GET, HEAD, OPTIONS) unless the browser says it comes from
 * a trusted origin. SameSite=Lax keeps the session cookie off other sites' requests, not off those of a sibling host
 * of the same site: only the Origin header (or, without it, Sec-Fetch-Site) tells those apart. Referer is not used:
 * browsers have sent Origin with every POST, PUT and DELETE for years, and a Referrer-Policy often strips Referer.
 */
export function assertTrustedOrigin(request: Request, trusted: ReadonlySet<string>): void {
  if (SAFE_METHODS.has(request.method)) return;
  const origin = request.headers.get("origin");
  const allowed = origin === null ? request.headers.get("sec-fetch-site") === "same-origin" : trusted.has(origin);
  if (!allowed) throw refused(origin);
}
