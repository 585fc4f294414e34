import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { LRUCache } from "lru-cache";
import { AppError, unauthorized, upstreamError, upstreamUnavailable } from "../errors.ts";
import { keycloakCertsUrl } from "./keycloak-urls.ts";

/** Asymmetric algorithms only: never `none`, never HS* (a public key must not become an HMAC secret). */
const ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];

type TokenClaims = JWTPayload & {
  azp?: string;
  typ?: string;
  email?: string;
  name?: string;
  preferred_username?: string;
  realm_access?: { roles?: string[] };
  /** Built-in provider: the generation of the client secret the token was made with. */
  secret_generation?: unknown;
  resource_access?: Record<string, { roles?: string[] } | undefined>;
};

/** A Keycloak realm's signing keys: cached, refetched on an unknown kid at most once per cooldown. */
export function remoteKeySet(issuer: string): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL(keycloakCertsUrl(issuer)), {
    timeoutDuration: 5_000,
    cooldownDuration: 30_000,
    cacheMaxAge: 10 * 60_000,
  });
}

const SERVICE = "identity provider";

/** jose's failure → 401 for anything wrong with the token, 502/503 when the issuer's keys cannot be had. */
function tokenFailure(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof errors.JWTExpired) return unauthorized("The token has expired; request a new one.", "TOKEN_EXPIRED");
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "iss") return unauthorized("The token was issued by an issuer this service does not trust.", "INVALID_TOKEN");
    if (error.claim === "aud") return unauthorized("The token is not meant for this service (wrong audience).", "INVALID_TOKEN");
    if (error.claim === "nbf") return unauthorized("The token is not valid yet.", "INVALID_TOKEN");
    return unauthorized(`The token's "${error.claim}" claim is missing or not valid.`, "INVALID_TOKEN");
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return unauthorized("The token is signed with an algorithm this service does not accept.", "INVALID_TOKEN");
  }
  if (error instanceof errors.JWKSNoMatchingKey) return unauthorized("The token is signed with a key the issuer does not publish.", "INVALID_TOKEN");
  if (error instanceof errors.JWSSignatureVerificationFailed) return unauthorized("The token's signature is not valid.", "INVALID_TOKEN");
  if (error instanceof errors.JWKSTimeout || !(error instanceof errors.JOSEError)) {
    return upstreamUnavailable(SERVICE, "The identity provider's signing keys could not be fetched, so the token cannot be checked. Try again later.");
  }
  if (error instanceof errors.JWKSInvalid || error.code === errors.JOSEError.code) {
    return upstreamError(SERVICE, "The identity provider answered with unusable signing keys, so the token cannot be checked.");
  }
  return unauthorized("The bearer token is not a valid JWT.", "INVALID_TOKEN");
}

/**
 * How many checked tokens are remembered. A device sends the same token with every request until it expires, and
 * checking the signature was the largest CPU cost of a device request; a fleet of a few hundred devices holds a
 * few hundred tokens.
 */
const REMEMBERED_TOKENS = 4096;

/**
 * Checks signature, issuer, audience, lifetime (with leeway) and algorithm; returns the claims. A token that passed
 * is remembered until it expires, so the same token is not checked again; the caller still looks up what the
 * token names (a deleted device is refused at once).
 */
export function createJwtCheck(options: { keys: JWTVerifyGetKey; issuer: string; audience: string; clockSkewSeconds: number }) {
  const passed = new LRUCache<string, TokenClaims>({ max: REMEMBERED_TOKENS });
  return async function checkJwt(token: string): Promise<TokenClaims> {
    const known = passed.get(token);
    if (known) return known;
    const claims = await verify(token);
    // jose accepts a token for up to a second past exp + leeway (it compares whole seconds); a TTL of 0 would mean
    // "never expires", so such a token is simply not remembered.
    const ttl = (claims.exp! + options.clockSkewSeconds) * 1000 - Date.now();
    if (ttl > 0) passed.set(token, claims, { ttl });
    return claims;
  };

  async function verify(token: string): Promise<TokenClaims> {
    let claims: TokenClaims;
    try {
      ({ payload: claims } = await jwtVerify<TokenClaims>(token, options.keys, {
        issuer: options.issuer,
        audience: options.audience,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: options.clockSkewSeconds,
        requiredClaims: ["exp", "iat"],
      }));
    } catch (error) {
      throw tokenFailure(error);
    }
    // Keycloak also signs ID tokens (typ "ID") with the same keys and audience: only access tokens are accepted.
    if (claims.typ !== undefined && String(claims.typ).toLowerCase() !== "bearer") {
      throw unauthorized("The token is not an access token.", "INVALID_TOKEN");
    }
    return claims;
  }
}

export type JwtCheck = ReturnType<typeof createJwtCheck>;
