/**
 * The backend's POST /oauth2/token with Keycloak: the device's client-credentials grant goes on to Keycloak's token
 * endpoint as it came, and Keycloak's answer goes back. Keycloak's tokens do not say which secret made them, so this is
 * where the backend sees that a device holds the new secret of its rotation (RotationEngine.proveNewSecret).
 */
import { OAUTH_ERROR_CODES, type OAuthErrorCode, oauthError } from "../errors.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { ClientAuthLimits } from "./client-auth-limits.ts";
import { clientCredentialsOf, type TokenRequest } from "./client-credentials-grant.ts";

type Options = {
  /** Keycloak's token endpoint. */
  tokenUrl: string;
  limits: ClientAuthLimits;
  /** Told of every token Keycloak issued, with the secret it was issued for. */
  proveNewSecret: (clientId: string, secret: string) => Promise<boolean>;
  logger: Logger;
  fetch?: typeof fetch;
  /** Per request to Keycloak; default 10 s. */
  requestTimeoutMs?: number;
};

/** Keycloak's answer headers that matter to an OAuth2 client. */
const PASSED_HEADERS = ["cache-control", "pragma", "retry-after"];

const isOAuthErrorCode = (code: unknown): code is OAuthErrorCode => OAUTH_ERROR_CODES.includes(code as OAuthErrorCode);

export function createKeycloakTokenPassThrough(options: Options) {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.requestTimeoutMs ?? 10_000;

  async function askKeycloak({ form, authorization }: TokenRequest) {
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if (authorization) headers.authorization = authorization;
    try {
      const res = await doFetch(options.tokenUrl, { method: "POST", headers, body: form, signal: AbortSignal.timeout(timeoutMs) });
      return { status: res.status, headers: res.headers, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
    } catch {
      throw oauthError(503, "temporarily_unavailable", "The identity provider is unreachable; try again later.", { headers: { "retry-after": "10" } });
    }
  }

  /** A token (Keycloak's JSON and headers), or an OAuth2-shaped error in the envelope with Keycloak's code. */
  return async function passThrough(request: TokenRequest): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, string> }> {
    options.limits.assertAddressAllowed(request.address);
    const { clientId, secret } = clientCredentialsOf(request);
    const reply = await askKeycloak(request);
    const headers = Object.fromEntries(PASSED_HEADERS.flatMap((name) => (reply.headers.has(name) ? [[name, reply.headers.get(name)!]] : [])));
    if (reply.status === 200 && reply.body && typeof reply.body.access_token === "string") {
      await options.proveNewSecret(clientId, secret).catch((error) =>
        options.logger.warn("Could not check whether the token proves a new secret; the device's next token request does", {
          client_id: clientId,
          error: errorMessage(error),
        }),
      );
      return { status: 200, body: reply.body, headers };
    }
    // Keycloak refuses a wrong secret with 401 (unauthorized_client or invalid_client).
    if (reply.status === 401) options.limits.failed({ clientId, address: request.address });
    const code = reply.body?.error;
    const description = typeof reply.body?.error_description === "string" ? reply.body.error_description : "The identity provider refused the request.";
    if (reply.status < 400 || reply.status >= 500) throw oauthError(502, "temporarily_unavailable", "The identity provider failed; try again later.", { headers });
    throw oauthError(reply.status, isOAuthErrorCode(code) ? code : "invalid_request", description, { headers });
  };
}

export type KeycloakTokenPassThrough = ReturnType<typeof createKeycloakTokenPassThrough>;
