import type { Database } from "../../db/client.ts";
import { prepareDeviceByClientId } from "../../db/device-with-model.ts";
import type { Config } from "../config.ts";
import { AppError, forbidden, unauthorized } from "../errors.ts";
import type { AdminIdentity, DevicePrincipal, TokenVerifier } from "./principal.ts";
import type { Metrics } from "../metrics.ts";
import type { BuiltinIssuer } from "./builtin-issuer.ts";
import { keycloakRealmUrls } from "./keycloak-urls.ts";
import { DEVICE_CLIENT_ID } from "./provider.ts";
import { createJwtCheck, remoteKeySet, type JwtCheck } from "./tokens.ts";

/** A device token names its device through `azp`: the client id of an existing device (which fixes its model). */
function createDeviceTokenVerifier(check: JwtCheck, db: Database): TokenVerifier<DevicePrincipal> {
  const deviceByClientId = prepareDeviceByClientId(db);
  return async (token) => {
    const claims = await check(token);
    if (!DEVICE_CLIENT_ID.test(claims.azp ?? "")) throw unauthorized("This token does not belong to a device.", "INVALID_TOKEN");
    const [found] = await deviceByClientId.execute({ clientId: claims.azp });
    if (!found) throw unauthorized("The device this token was issued to does not exist.", "UNKNOWN_DEVICE");
    return {
      kind: "device",
      device: found.device,
      model: found.model,
      tokenIssuedAt: claims.iat === undefined ? null : new Date(claims.iat * 1000),
      secretGeneration: Number.isInteger(claims.secret_generation) ? (claims.secret_generation as number) : null,
      rotationCompleted: false,
    };
  };
}

/** An admin token: roles from the realm and from the backend's client; a device's token is never an admin. */
function createAdminTokenVerifier(check: JwtCheck, rolesClientId: string): TokenVerifier<AdminIdentity> {
  return async (token) => {
    const claims = await check(token);
    if (DEVICE_CLIENT_ID.test(claims.azp ?? "")) throw forbidden("A device token cannot be used for the admin API.");
    const roles = new Set([...(claims.realm_access?.roles ?? []), ...(claims.resource_access?.[rolesClientId]?.roles ?? [])]);
    return {
      kind: "admin",
      subject: claims.sub ?? "",
      email: claims.email ?? null,
      name: claims.name ?? claims.preferred_username ?? null,
      roles: [...roles],
    };
  };
}

/** Counts every token check in iot_auth_validation_total{status}. */
function counted<P>(metrics: Metrics, verify: TokenVerifier<P>): TokenVerifier<P> {
  return async (token, request) => {
    try {
      const principal = await verify(token, request);
      metrics.authValidations.inc({ status: "success" });
      return principal;
    } catch (error) {
      metrics.authValidations.inc({ status: error instanceof AppError && error.status < 500 ? "invalid" : "unavailable" });
      throw error;
    }
  };
}

/**
 * The bearer-token verifiers for createAuthenticator. Devices: the built-in issuer, or the Keycloak realm
 * (OIDC_ISSUER_URL when set). Admins: OIDC_ISSUER_URL only; without it only ADMIN_API_TOKEN (or the BFF) admits.
 */
export function createTokenVerifiers(options: { config: Config; db: Database; builtinIssuer: BuiltinIssuer | null; metrics: Metrics }) {
  const { config, db, builtinIssuer, metrics } = options;
  const keySets = new Map<string, ReturnType<typeof remoteKeySet>>();
  const sharedKeySet = (issuer: string) => {
    if (!keySets.has(issuer)) keySets.set(issuer, remoteKeySet(issuer));
    return keySets.get(issuer)!;
  };
  const checkFor = (issuer: string, keys = sharedKeySet(issuer)) =>
    createJwtCheck({ keys, issuer, audience: config.OIDC_AUDIENCE, clockSkewSeconds: config.OIDC_CLOCK_SKEW_SECONDS });

  const adminIssuer = config.OIDC_ISSUER_URL;
  const deviceCheck = builtinIssuer
    ? checkFor(builtinIssuer.issuer, builtinIssuer.keys)
    : checkFor(adminIssuer ?? keycloakRealmUrls(config.KEYCLOAK_BASE_URL!, config.KEYCLOAK_REALM!).issuer);

  return {
    verifyDeviceToken: counted(metrics, createDeviceTokenVerifier(deviceCheck, db)),
    verifyAdminToken: adminIssuer
      ? counted(metrics, createAdminTokenVerifier(checkFor(adminIssuer), config.OIDC_CLIENT_ID ?? config.OIDC_AUDIENCE))
      : undefined,
  };
}
