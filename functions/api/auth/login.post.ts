import { readFormBody } from "../../../lib/http/body.ts";
import { safeRedirectPath } from "../../../lib/http/redirect-path.ts";
import { redirect } from "../../../lib/http/respond.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { localSignInOf } from "../../../lib/identity/local-sign-in.ts";
import { errorSchema } from "../../../lib/schemas.ts";
import { validationFailed } from "../../../lib/errors.ts";

export default defineRoute({
  method: "POST",
  path: "/api/auth/login",
  access: "public",
  summary: "The sign-in page's form: sign in with the admin API token (only without an OIDC provider)",
  description:
    "Form-encoded `token` (the admin API token) and `redirect` (where to go afterwards: a same-origin path, else `/`). " +
    "Success: 303 to `redirect` with the HttpOnly session cookie `iot_access_token`, the cookie of the OIDC login. " +
    "A wrong token: 303 back to the sign-in page with `error=invalid_token`. Wrong tokens are counted per client address " +
    "(SIGN_IN_FAILURE_LIMIT per SIGN_IN_FAILURE_WINDOW_SECONDS); beyond that every attempt from the address, the right " +
    "token too, goes back with `error=too_many_attempts&retry_after=<seconds>`. The form must be posted from the backend's " +
    "own origin or one of CSRF_TRUSTED_ORIGINS, else it goes back with `error=untrusted_origin` (the token unread).",
  tags: ["Authentication"],
  request: {
    rawBody: {
      description: "The sign-in form",
      content: {
        "application/x-www-form-urlencoded": {
          schema: { type: "object", properties: { token: { type: "string" }, redirect: { type: "string" } }, required: ["token"] },
        },
      },
    },
  },
  responses: {
    303: { description: "Signed in: to `redirect`, with the session cookie; refused: back to the sign-in page with `error`" },
    400: { description: "The form has no token", content: { "application/json": { schema: errorSchema } } },
  },
  uses: ["localSignIn"],
  async handler(request, { services, clientAddress }) {
    const signIn = localSignInOf(services);
    const form = await readFormBody(request);
    const token = form.get("token");
    if (!token) throw validationFailed([{ field: "token", message: "The admin API token is required." }]);
    const back = safeRedirectPath(form.get("redirect"));
    const result = signIn.signIn(request, token, clientAddress);
    if ("cookies" in result) return redirect(back, result.cookies, 303);
    const page = new URLSearchParams({ redirect: back, error: result.refused.error });
    if (result.refused.error === "too_many_attempts") page.set("retry_after", String(result.refused.retryAfterSeconds));
    return redirect(`/api/auth/login?${page}`, [], 303);
  },
});
