import { defineRoute } from "../../../lib/http/route.ts";
import { browserSessionOf } from "../../../lib/identity/browser-session.ts";
import { redirect } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "GET",
  path: "/api/auth/callback",
  access: "public",
  summary: "The identity provider's redirect back: sets the session cookies, 302 to where the login started",
  description:
    "Called by the browser with the identity provider's `code` and `state` (or `error`). On success it sets the " +
    "HttpOnly cookies `iot_access_token`, `iot_refresh_token` and `iot_id_token`. Any failure also answers 302, to " +
    "the saved path (or `/` when the state is unknown, expired or tampered with) with `login_error=<code>` added: " +
    "`invalid_state`, the provider's own error such as `access_denied`, `idp_unavailable` or `login_failed`.",
  tags: ["Authentication"],
  responses: { 302: { description: "Back to the web UI" } },
  uses: ["browserSession"],
  async handler(request, { services, logger }) {
    const { location, cookies, failure } = await browserSessionOf(services).completeLogin(request);
    if (failure) logger.warn("Browser login failed", { reason: failure });
    return redirect(location, cookies);
  },
});
