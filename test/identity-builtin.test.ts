/**
 * The built-in identity provider against the same contract as Keycloak, authenticating through its real token endpoint.
 */
import { decodeJwt } from "jose";
import { createTestApp } from "./support/app.ts";
import { describeIdentityProviderContract } from "./support/identity-contract.ts";

describeIdentityProviderContract("builtin", async () => {
  const app = await createTestApp();
  /** The claims of a token granted for these credentials; null when the token endpoint refuses them. */
  async function grantedClaims(clientId: string, secret: string) {
    const response = await app.fetch(
      new Request("http://iot.test/oauth2/token", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }),
      }),
    );
    if (response.status === 401) return null;
    if (response.status !== 200) throw new Error(`unexpected HTTP ${response.status} from the token endpoint`);
    const claims = decodeJwt((await response.json()).access_token);
    if (claims.azp !== clientId) throw new Error(`the token names ${String(claims.azp)}, not ${clientId}`);
    return claims;
  }
  return {
    provider: app.services.identity,
    canAuthenticate: async (clientId, secret) => (await grantedClaims(clientId, secret)) !== null,
    tokenSecretGeneration: async (clientId, secret) => ((await grantedClaims(clientId, secret))?.secret_generation as number | undefined) ?? null,
    close: () => app.close(),
  };
});
