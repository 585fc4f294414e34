/** Who is calling: the types every layer passes around once the authenticator has decided. */
import type { DeviceRow, ModelRow } from "../../db/schema.ts";
import { unauthorized } from "../errors.ts";

/** Who may call a route: an admin, a device (by its own token), or anybody. */
export type Access = "admin" | "device" | "public";

/** An admin as a token names it (what an admin TokenVerifier returns). */
export type AdminIdentity = { kind: "admin"; subject: string; email: string | null; name: string | null; roles: string[] };
/** Whoever holds ADMIN_API_TOKEN (as a bearer token, or signed in with it on the sign-in page). */
export const API_TOKEN_ADMIN: AdminIdentity = { kind: "admin", subject: "admin-api-token", email: null, name: "Admin API token", roles: ["admin"] };
/**
 * How an admin's request was authenticated: a bearer token in its Authorization header, the browser session cookie,
 * or nothing (AUTH_DISABLED). A browser sends the cookie on its own; a bearer token is sent on purpose.
 */
export type AdminCredential = "bearer" | "session" | "none";
export type AdminPrincipal = AdminIdentity & { credential: AdminCredential };
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

/** Verifies a bearer token (JWT) and returns the principal it names; provided by the identity layer. No request: the embedded broker's. */
export type TokenVerifier<P> = (token: string, request?: Request) => Promise<P>;

/** The device of a `device` route (the authenticator guarantees it; this narrows the type). */
export function devicePrincipal(principal: Principal): DevicePrincipal {
  if (principal.kind !== "device") throw unauthorized("A device bearer token is required.");
  return principal;
}

/** Who did something, as rollouts and the audit trail name them: an admin's subject, or device:<client id>. */
export function actorOf(principal: Principal): string {
  if (principal.kind === "admin") return principal.subject;
  if (principal.kind === "device") return `device:${principal.device.clientId}`;
  return "anonymous";
}
