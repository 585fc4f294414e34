import { notFound } from "../../../lib/errors.ts";
import { redirectQuery, safeRedirectPath } from "../../../lib/http/redirect-path.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { redirect } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "GET",
  path: "/api/auth/login",
  access: "public",
  summary: "Start the browser login: 302 to the identity provider (authorization code + PKCE)",
  tags: ["Authentication"],
  request: { query: redirectQuery },
  responses: { 302: { description: "To the identity provider's login page" } },
  async handler(_request, { services, query }) {
    const session = services.browserSession;
    if (!session) {
      throw notFound("Browser login is not configured on this server (OIDC_ISSUER_URL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET).", "LOGIN_NOT_CONFIGURED");
    }
    const { location, cookies } = await session.beginLogin(safeRedirectPath(query.redirect));
    return redirect(location, cookies);
  },
});
