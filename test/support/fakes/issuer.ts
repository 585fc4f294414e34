/** The built-in token server's fake: the real failure limits, the fake provider's secrets, a key made per instance. */
import { randomUUID } from "node:crypto";
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import type { BuiltinIssuer } from "../../../lib/identity/builtin-issuer.ts";
import type { ClientAuthLimits } from "../../../lib/identity/client-auth-limits.ts";
import type { FakeIdentityProvider } from "./identity.ts";

const LIFETIME_SECONDS = 300;

export function fakeBuiltinIssuer(options: { issuer: string; audience: string; identity: FakeIdentityProvider; limits: ClientAuthLimits }): BuiltinIssuer {
  const { issuer, audience } = options;
  // Made on first use: an RSA key costs tens of milliseconds, and most tests never sign a token.
  let key: Promise<{ privateKey: CryptoKey; publicJwk: JWK; keySet: ReturnType<typeof createLocalJWKSet> }> | null = null;
  const signingKey = () =>
    (key ??= generateKeyPair("RS256").then(async ({ privateKey, publicKey }) => {
      const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: "fake", alg: "RS256", use: "sig" };
      return { privateKey, publicJwk, keySet: createLocalJWKSet({ keys: [publicJwk] }) };
    }));

  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    keys: async (header, token) => (await signingKey()).keySet(header, token),
    jwks: async () => ({ keys: [(await signingKey()).publicJwk] }),
    async authenticateClient(clientId, secret, address) {
      options.limits.assertAddressAllowed(address);
      const generation = await options.identity.generationOf(clientId, secret);
      if (generation === null) options.limits.failed({ clientId, address });
      return generation;
    },
    async issueToken(clientId, secretGeneration) {
      const now = Math.floor(Date.now() / 1000);
      const accessToken = await new SignJWT({ typ: "Bearer", azp: clientId, client_id: clientId, secret_generation: secretGeneration })
        .setProtectedHeader({ alg: "RS256", kid: "fake", typ: "JWT" })
        .setIssuer(issuer)
        .setAudience(audience)
        .setSubject(clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + LIFETIME_SECONDS)
        .setJti(randomUUID())
        .sign((await signingKey()).privateKey);
      return { access_token: accessToken, expires_in: LIFETIME_SECONDS, refresh_expires_in: 0, token_type: "Bearer", "not-before-policy": 0, scope: "" };
    },
  };
}
