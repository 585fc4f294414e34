import { redirectQuery, safeRedirectPath } from "../../../lib/http/redirect-path.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { redirect } from "../../../lib/http/respond.ts";
import { signInPage, signInPageQuery } from "../../../lib/http/sign-in-page.ts";

export default defineRoute({
  method: "GET",
  path: "/api/auth/login",
  access: "public",
  summary: "Start the browser login: 302 to the identity provider (authorization code + PKCE), or the sign-in page",
  description:
    "With an OIDC provider configured, a 302 to its login page. Without one, the backend's own sign-in page (HTML), " +
    "where an admin signs in with the admin API token; it posts to `POST /api/auth/login`. `error` and `retry_after` " +
    "are how that POST says why it refused a sign-in.",
  tags: ["Authentication"],
  request: { query: redirectQuery.extend(signInPageQuery.shape) },
  responses: {
    200: { description: "The sign-in page (no OIDC provider configured)", content: { "text/html": { schema: { type: "string" } } } },
    302: { description: "To the identity provider's login page" },
  },
  uses: ["browserSession"],
  async handler(_request, { services, query }) {
    const back = safeRedirectPath(query.redirect);
    if (!services.browserSession) return signInPage(back, query);
    const { location, cookies } = await services.browserSession.beginLogin(back);
    return redirect(location, cookies);
  },
});
