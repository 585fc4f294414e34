import { createHash } from "node:crypto";
import { z } from "zod";

/**
 * The sign-in page of /api/auth/login without an OIDC provider: one self-contained HTML document (no scripts, no
 * external assets) under a Content-Security-Policy that allows nothing but its own inline style and posting the form
 * back to this origin.
 */
const STYLE = `
body { font-family: system-ui, sans-serif; background: #f4f5f7; color: #1f2328; margin: 0; }
main { max-width: 22rem; margin: 12vh auto; padding: 2rem; background: #fff; border-radius: 8px; box-shadow: 0 1px 4px #0002; }
h1 { font-size: 1.25rem; margin: 0 0 1rem; }
label { display: block; font-weight: 600; margin-bottom: .25rem; }
input { box-sizing: border-box; width: 100%; padding: .5rem; font: inherit; border: 1px solid #8c959f; border-radius: 4px; }
button { margin-top: 1rem; width: 100%; padding: .6rem; font: inherit; font-weight: 600; color: #fff; background: #0969da; border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #a40e26; background: #ffebe9; border-radius: 4px; padding: .5rem; }
.hint { color: #57606a; font-size: .875rem; }
`;
const STYLE_HASH = createHash("sha256").update(STYLE).digest("base64");

export const SIGN_IN_PAGE_HEADERS: Record<string, string> = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // Not no-referrer: under it browsers send `Origin: null` with the form, which the origin check must refuse.
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

/**
 * What the page says after a refused sign-in (the `error` and `retry_after` of its URL). Like `redirect`, they make do
 * with what they get: a value the page does not know shows nothing, rather than an error page.
 */
const lenientText = z.string().optional().catch(undefined);
export const signInPageQuery = z.object({
  error: lenientText.meta({ description: "Why the last sign-in was refused: `invalid_token`, `too_many_attempts` or `untrusted_origin`" }),
  retry_after: lenientText.meta({ description: "With too_many_attempts: seconds until another attempt is accepted" }),
});

function messageFor(query: z.output<typeof signInPageQuery>): string | null {
  if (query.error === "invalid_token") return "That is not the admin API token.";
  if (query.error === "untrusted_origin") {
    return "Sign-in refused: this page was opened at an address the server does not accept sign-ins from. Open it at the server's own address, or ask its operator to add this one to CSRF_TRUSTED_ORIGINS.";
  }
  if (query.error !== "too_many_attempts") return null;
  const seconds = /^\d{1,5}$/.test(query.retry_after ?? "") ? Number(query.retry_after) : 0;
  const minutes = Math.ceil(seconds / 60);
  return `Too many failed sign-ins from your address. Try again ${seconds > 0 ? `in ${minutes} minute${minutes > 1 ? "s" : ""}` : "later"}.`;
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (char) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[char]!);

/** The page; `redirect` is a path already checked by safeRedirectPath, escaped here all the same. */
export function signInPage(redirect: string, query: z.output<typeof signInPageQuery>): Response {
  const message = messageFor(query);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · IoT Support</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>IoT Support · Sign in</h1>
${message ? `<p class="error" role="alert">${escapeHtml(message)}</p>\n` : ""}<form method="post" action="/api/auth/login">
<input type="hidden" name="redirect" value="${escapeHtml(redirect)}">
<label for="token">Admin API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p class="hint">The server prints the token when it first starts and keeps it in <code>DATA_DIR/admin-api-token</code>, unless <code>ADMIN_API_TOKEN</code> sets it.</p>
</main>
</body>
</html>
`;
  return new Response(html, { status: 200, headers: SIGN_IN_PAGE_HEADERS });
}
