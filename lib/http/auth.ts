import type { Config } from "../config.ts";
import { sameSecret } from "../secrets.ts";
import type { ModelRow } from "../device-models.ts";
import type { DeviceRow } from "../devices.ts";
import { forbidden, unauthorized } from "./errors.ts";
import type { Access } from "./route.ts";

export type AdminPrincipal = { kind: "admin"; subject: string; email: string | null; name: string | null; roles: string[] };
/**
 * The device a token names, with its model row (read by the same query, so device routes need no second one).
 * `secretGeneration`: which of the client's secrets the token was made with (built-in provider; null for Keycloak).
 * `rotationCompleted`: this request, made with the device's new secret, completed its rotation (`device` is the row
 * as it was before).
 */
export type DevicePrincipal = {
  kind: "device";
  device: DeviceRow;
  model: ModelRow;
  tokenIssuedAt: Date | null;
  secretGeneration: number | null;
  rotationCompleted: boolean;
};
export type Principal = { kind: "anonymous" } | AdminPrincipal | DevicePrincipal;

/** Verifies a bearer token (JWT) and returns the principal it names; provided by the identity layer. */
export type TokenVerifier<P> = (token: string, request: Request) => Promise<P>;

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

const STATIC_ADMIN: AdminPrincipal = { kind: "admin", subject: "admin-api-token", email: null, name: "Admin API token", roles: ["admin"] };
const DEV_ADMIN: AdminPrincipal = { kind: "admin", subject: "auth-disabled", email: null, name: "Development (auth disabled)", roles: ["admin"] };

export function createAuthenticator(options: {
  config: Pick<Config, "AUTH_DISABLED">;
  adminApiToken: string | null;
  /** Reads the admin's token from the BFF cookie when there is no Authorization header. */
  adminTokenFromRequest?: (request: Request, responseCookies: ResponseCookies) => Promise<string | null>;
  verifyAdminToken?: TokenVerifier<AdminPrincipal>;
  verifyDeviceToken?: TokenVerifier<DevicePrincipal>;
}): Authenticator {
  async function identify(request: Request, responseCookies: ResponseCookies): Promise<AdminPrincipal> {
    if (options.config.AUTH_DISABLED) return DEV_ADMIN;
    const token = bearerToken(request) ?? (await options.adminTokenFromRequest?.(request, responseCookies)) ?? null;
    if (!token) throw unauthorized("Sign in or send an admin bearer token.");
    if (options.adminApiToken && sameSecret(token, options.adminApiToken)) return STATIC_ADMIN;
    if (!options.verifyAdminToken) throw unauthorized("The bearer token is not valid.", "INVALID_TOKEN");
    return options.verifyAdminToken(token, request);
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

/** The device of a `device` route (createAuthenticator guarantees it; this narrows the type). */
export function devicePrincipal(principal: Principal): DevicePrincipal {
  if (principal.kind !== "device") throw unauthorized("A device bearer token is required.");
  return principal;
}
