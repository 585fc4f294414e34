import { z } from "zod";

const PROBE_ORIGIN = "http://redirect.invalid";
const MAX_LENGTH = 2048;

/** Decodes percent-escapes until stable, so `%252F` cannot hide a `/` from the checks; null when malformed. */
function fullyDecoded(value: string): string | null {
  let current = value;
  for (let round = 0; round < 5; round++) {
    let next: string;
    try {
      next = decodeURIComponent(current);
    } catch {
      return null;
    }
    if (next === current) return current;
    current = next;
  }
  return null;
}

const looksRelative = (path: string) =>
  path.startsWith("/") && !path.startsWith("//") && !path.includes("\\") && !/[\u0000-\u001f\u007f]/.test(path);

/**
 * The path to send the browser back to after login or logout: a same-origin relative path, else "/".
 * Rejects protocol-relative (`//x`, `/\x`), absolute and scripted URLs, also when percent-encoded, because a
 * UI or proxy that decodes the value once would otherwise navigate off-site.
 */
export function safeRedirectPath(raw: string | null | undefined): string {
  if (!raw || raw.length > MAX_LENGTH) return "/";
  const decoded = fullyDecoded(raw);
  if (decoded === null || !looksRelative(raw) || !looksRelative(decoded)) return "/";
  const url = new URL(raw, PROBE_ORIGIN);
  if (url.origin !== PROBE_ORIGIN) return "/";
  return `${url.pathname}${url.search}${url.hash}`;
}

/** The `?redirect=` of /api/auth/login and /logout; a malformed value (e.g. repeated) falls back like any other. */
export const redirectQuery = z.object({
  redirect: z
    .string()
    .optional()
    .catch(undefined)
    .meta({ description: "Where to go afterwards: a same-origin path such as /devices; anything else means /" }),
});
