import { redirectQuery, safeRedirectPath } from "../../../lib/http/redirect-path.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { browserSessionOf } from "../../../lib/identity/browser-session.ts";
import { redirect } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "GET",
  path: "/api/auth/login",
  access: "public",
  summary: "Start the browser login: 302 to the identity provider (authorization code + PKCE)",
  tags: ["Authentication"],
  request: { query: redirectQuery },
  responses: { 302: { description: "To the identity provider's login page" } },
  uses: ["browserSession"],
  async handler(_request, { services, query }) {
    const { location, cookies } = await browserSessionOf(services).beginLogin(safeRedirectPath(query.redirect));
    return redirect(location, cookies);
  },
});
