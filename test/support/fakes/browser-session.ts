/** A BrowserSession standing for the identity provider's login pages: redirects and cookies, no provider. */
import type { BrowserSession } from "../../../lib/identity/browser-session.ts";

export const IDP = "https://idp.test";
export const ACCESS_COOKIE = "iot_access_token";

export function fakeBrowserSession(): BrowserSession {
  return {
    async beginLogin(redirect) {
      return { location: `${IDP}/authorize?return=${encodeURIComponent(redirect)}`, cookies: [`iot_login=pending; Path=/api/auth; HttpOnly`] };
    },
    async completeLogin(request) {
      const query = new URL(request.url).searchParams;
      const error = query.get("error");
      if (error || !query.get("code")) return { location: `/?login_error=${error ?? "invalid_state"}`, cookies: [], failure: error ?? "no code" };
      return { location: "/", cookies: [`${ACCESS_COOKIE}=token-for-${query.get("code")}; Path=/; HttpOnly`] };
    },
    async logout(_request, redirect) {
      return { location: `${IDP}/logout?return=${encodeURIComponent(redirect)}`, cookies: [`${ACCESS_COOKIE}=; Path=/; Max-Age=0`] };
    },
    async tokenFromRequest(request) {
      const cookie = request.headers.get("cookie")?.match(new RegExp(`(?:^|;\\s*)${ACCESS_COOKIE}=([^;]+)`));
      return cookie?.[1] ?? null;
    },
  };
}
