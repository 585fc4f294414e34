import type { Config } from "../config.ts";
import { sameSecret } from "../secrets.ts";
import { forbidden, unauthorized } from "../errors.ts";
import { type Access, type AdminIdentity, type AdminPrincipal, API_TOKEN_ADMIN, type DevicePrincipal, type Principal, type TokenVerifier } from "./principal.ts";

/**
 * Set-Cookie headers decided while authenticating (a refreshed or ended browser session): the app adds them to this
 * request's response, whatever the handler returns or throws.
 */
export type ResponseCookies = string[];

export type Authenticator = {
  authenticate(request: Request, access: Access, responseCookies: ResponseCookies): Promise<Principal>;
  /** Who is signed in (admin or not: /api/auth/self shows a non-admin that they lack the role); 401 when nobody. */
  identify(request: Request, responseCookies: ResponseCookies): Promise<AdminPrincipal>;
};

function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1] ?? null;
}

/** Everybody under AUTH_DISABLED: the UI shows its name as the signed-in user's. */
const DEV_ADMIN: AdminPrincipal = { kind: "admin", subject: "auth-disabled", email: null, name: "Local Admin", roles: ["admin"], credential: "none" };

export function createAuthenticator(options: {
  config: Pick<Config, "AUTH_DISABLED">;
  adminApiToken: string | null;
  /** Reads the admin's token from the BFF cookie when there is no Authorization header. */
  adminTokenFromRequest?: (request: Request, responseCookies: ResponseCookies) => Promise<string | null>;
  /**
   * A session the backend keeps itself (the sign-in page's, a test session's), read from the session cookie when
   * there is no Authorization header; null when the request carries none. Asked before adminTokenFromRequest.
   */
  sessionFromRequest?: (request: Request) => AdminIdentity | null;
  verifyAdminToken?: TokenVerifier<AdminIdentity>;
  verifyDeviceToken?: TokenVerifier<DevicePrincipal>;
}): Authenticator {
  async function identify(request: Request, responseCookies: ResponseCookies): Promise<AdminPrincipal> {
    if (options.config.AUTH_DISABLED) return DEV_ADMIN;
    const bearer = bearerToken(request);
    const session = bearer ? null : (options.sessionFromRequest?.(request) ?? null);
    if (session) return { ...session, credential: "session" };
    const token = bearer ?? (await options.adminTokenFromRequest?.(request, responseCookies)) ?? null;
    if (!token) throw unauthorized("Sign in or send an admin bearer token.");
    const credential = bearer ? "bearer" : "session";
    if (options.adminApiToken && sameSecret(token, options.adminApiToken)) return { ...API_TOKEN_ADMIN, credential };
    if (!options.verifyAdminToken) throw unauthorized("The bearer token is not valid.", "INVALID_TOKEN");
    return { ...(await options.verifyAdminToken(token, request)), credential };
  }

  async function admin(request: Request, responseCookies: ResponseCookies): Promise<AdminPrincipal> {
    const principal = await identify(request, responseCookies);
    if (!principal.roles.includes("admin")) throw forbidden("This account does not have the admin role.");
    return principal;
  }

  async function device(request: Request): Promise<DevicePrincipal> {
    const token = bearerToken(request);
    if (!token) throw unauthorized("A device bearer token is required.");
    if (!options.verifyDeviceToken) throw unauthorized("The bearer token is not valid.", "INVALID_TOKEN");
    return options.verifyDeviceToken(token, request);
  }

  return {
    identify,
    async authenticate(request, access, responseCookies) {
      if (access === "admin") return admin(request, responseCookies);
      if (access === "device") return device(request);
      return { kind: "anonymous" };
    },
  };
}
