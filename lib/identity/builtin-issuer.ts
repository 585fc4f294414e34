import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { calculateJwkThumbprint, createLocalJWKSet, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTVerifyGetKey } from "jose";
import type { Database } from "../../db/client.ts";
import { settings } from "../../db/schema.ts";
import { SecretKeyMismatch, type SecretBox } from "../secrets.ts";
import type { BuiltinClientStore } from "./builtin-clients.ts";
import type { ClientAuthLimits } from "./client-auth-limits.ts";

/**
 * The built-in provider's OAuth2 side: checks client credentials against the built-in client store and signs
 * RS256 access tokens shaped like Keycloak's. The signing key lives in the settings table, Fernet-encrypted, so
 * every replica and every restart uses the same key.
 */
export const SIGNING_KEY_SETTING = "builtin_oauth2_signing_key";
const BUILTIN_TOKEN_LIFETIME_SECONDS = 300;
const ALG = "RS256";

type SigningKey = { kid: string; privateKey: CryptoKey | Uint8Array; publicJwk: JWK; keySet: JWTVerifyGetKey };

async function generateSigningJwk(): Promise<string> {
  const { privateKey } = await generateKeyPair(ALG, { extractable: true, modulusLength: 2048 });
  const jwk = await exportJWK(privateKey);
  return JSON.stringify({ ...jwk, kid: await calculateJwkThumbprint(jwk), alg: ALG, use: "sig" });
}

async function loadSigningKey(db: Database, secretBox: SecretBox): Promise<SigningKey> {
  const read = async () =>
    (await db.select({ value: settings.value }).from(settings).where(eq(settings.key, SIGNING_KEY_SETTING)))[0]?.value;
  let stored = await read();
  if (!stored) {
    // Replicas starting together may both generate one: the first insert wins and everybody reads that one.
    await db
      .insert(settings)
      .values({ key: SIGNING_KEY_SETTING, value: secretBox.encrypt(await generateSigningJwk()) })
      .onConflictDoNothing();
    stored = await read();
  }
  if (!stored) throw new Error("The built-in signing key could not be stored");
  let jwk: JWK & { kid: string };
  try {
    jwk = JSON.parse(secretBox.decrypt(stored));
  } catch (error) {
    if (error instanceof SecretKeyMismatch) {
      throw new Error(`The built-in OAuth2 signing key (settings.${SIGNING_KEY_SETTING}) cannot be decrypted with SECRET_ENCRYPTION_KEY`);
    }
    throw error;
  }
  const publicJwk: JWK = { kty: jwk.kty, n: jwk.n, e: jwk.e, kid: jwk.kid, alg: ALG, use: "sig" };
  return { kid: jwk.kid, privateKey: await importJWK(jwk, ALG), publicJwk, keySet: createLocalJWKSet({ keys: [publicJwk] }) };
}


export function createBuiltinIssuer(options: {
  db: Database;
  secretBox: SecretBox;
  /** `<public base url>/oauth2` */
  issuer: string;
  audience: string;
  clients: Pick<BuiltinClientStore, "generationOf">;
  limits: ClientAuthLimits;
}) {
  const { issuer, audience } = options;
  let loading: Promise<SigningKey> | null = null;
  // Loaded on first use (the settings table may not exist before migrations ran); a failed load is retried.
  const signingKey = () =>
    (loading ??= loadSigningKey(options.db, options.secretBox).catch((error) => {
      loading = null;
      throw error;
    }));

  const keys: JWTVerifyGetKey = async (header, token) => (await signingKey()).keySet(header, token);

  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    /** Verification keys for jose's jwtVerify: the local key, no HTTP. */
    keys,

    async jwks(): Promise<{ keys: JWK[] }> {
      return { keys: [(await signingKey()).publicJwk] };
    },

    /**
     * Checks a client's secret within the failure limits per client and per `address` (429 while one is spent): the
     * generation of the secret it is, or null when it is none. The comparison is the store's, in constant time.
     */
    async authenticateClient(clientId: string, secret: string, address: string | null): Promise<number | null> {
      options.limits.assertAddressAllowed(address);
      const generation = await options.clients.generationOf(clientId, secret);
      if (generation === null) options.limits.failed({ clientId, address });
      return generation;
    },

    /**
     * A Keycloak-shaped client-credentials token response. `secret_generation` names the secret the token was made
     * with, so the rotation engine can tell a device that holds the new secret from one that still uses the old.
     */
    async issueToken(clientId: string, secretGeneration: number) {
      const { kid, privateKey } = await signingKey();
      const now = Math.floor(Date.now() / 1000);
      const accessToken = await new SignJWT({ typ: "Bearer", azp: clientId, client_id: clientId, secret_generation: secretGeneration })
        .setProtectedHeader({ alg: ALG, kid, typ: "JWT" })
        .setIssuer(issuer)
        .setAudience(audience)
        .setSubject(clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + BUILTIN_TOKEN_LIFETIME_SECONDS)
        .setJti(randomUUID())
        .sign(privateKey);
      return {
        access_token: accessToken,
        expires_in: BUILTIN_TOKEN_LIFETIME_SECONDS,
        refresh_expires_in: 0,
        token_type: "Bearer",
        "not-before-policy": 0,
        scope: "",
      };
    },
  };
}

export type BuiltinIssuer = ReturnType<typeof createBuiltinIssuer>;

/** The issuer of an /oauth2 route: those are served only while the built-in provider issues device tokens (routesFor). */
export function builtinIssuerOf(services: { builtinIssuer: BuiltinIssuer | null }): BuiltinIssuer {
  if (!services.builtinIssuer) throw new Error("An /oauth2 route was served without the built-in token server");
  return services.builtinIssuer;
}
