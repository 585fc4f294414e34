import { redirectQuery, safeRedirectPath } from "../../../lib/http/redirect-path.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { redirect } from "../../../lib/http/respond.ts";

export default defineRoute({
  method: "GET",
  path: "/api/auth/logout",
  access: "public",
  summary: "Sign out: clears the session cookies, ends the identity provider's session, 302 back",
  tags: ["Authentication"],
  request: { query: redirectQuery },
  responses: { 302: { description: "To the identity provider's logout (which returns to `redirect`), or straight to `redirect`" } },
  uses: ["browserSession", "localSignIn"],
  async handler(request, { services, query }) {
    const back = safeRedirectPath(query.redirect);
    if (!services.browserSession) return redirect(back, services.localSignIn?.signOut() ?? []);
    const { location, cookies } = await services.browserSession.logout(request, back);
    return redirect(location, cookies);
  },
});
