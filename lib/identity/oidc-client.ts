import * as oidc from "openid-client";
import { AppError, upstreamError, upstreamUnavailable } from "../errors.ts";

/**
 * The backend as an OpenID Connect relying party (confidential client) for the browser login, on openid-client:
 * discovery (cached), authorization code + PKCE, refresh, end-session URL. Failures become our typed errors.
 */
export type OidcTokens = {
  accessToken: string;
  refreshToken: string | null;
  idToken: string | null;
  /** Seconds the refresh token (the IdP session) stays usable, when the IdP says (Keycloak's refresh_expires_in). */
  sessionSeconds: number | null;
};

type LoginChecks = { state: string; nonce: string; codeVerifier: string };

export type OidcClient = {
  authorizationUrl(checks: LoginChecks): Promise<URL>;
  /** `callbackUrl` carries the authorization response (code, state, or error) as query parameters. */
  exchangeCode(callbackUrl: URL, checks: LoginChecks): Promise<OidcTokens>;
  /** Throws SessionEnded when the IdP no longer accepts the refresh token. */
  refresh(refreshToken: string): Promise<OidcTokens>;
  /** The IdP's end-session URL, or null when it publishes none. */
  endSessionUrl(params: { idToken: string | null; postLogoutRedirectUri: string }): Promise<URL | null>;
};

/** The IdP answered the authorization request with an error (e.g. access_denied) or refused the grant. */
export class LoginRejected extends Error {
  constructor(readonly reason: string) {
    super(`The identity provider rejected the login (${reason})`);
  }
}

export class SessionEnded extends Error {}

const SERVICE = "identity provider";
const TIMEOUT_SECONDS = 10;

function isNetworkFailure(error: unknown): boolean {
  const name = (error as Error | null)?.name;
  if (name === "TimeoutError" || name === "AbortError") return true;
  return error instanceof TypeError && !String((error as { code?: string }).code ?? "").startsWith("ERR_");
}

/** Maps openid-client's failures to our errors; `grantRefused` decides what an OAuth error response means. */
function translate(error: unknown, grantRefused: (oauthError: string) => Error): never {
  if (error instanceof AppError || error instanceof LoginRejected || error instanceof SessionEnded) throw error;
  if (error instanceof oidc.AuthorizationResponseError) throw new LoginRejected(error.error);
  if (error instanceof oidc.ResponseBodyError) throw grantRefused(error.error);
  if (isNetworkFailure(error)) throw upstreamUnavailable(SERVICE, "The identity provider cannot be reached. Try again shortly.");
  if (error instanceof oidc.ClientError) throw upstreamError(SERVICE, "The identity provider sent a response the backend cannot use.");
  throw error;
}

const tokensFrom = (response: oidc.TokenEndpointResponse): OidcTokens => ({
  accessToken: response.access_token,
  refreshToken: response.refresh_token ?? null,
  idToken: response.id_token ?? null,
  sessionSeconds: typeof response.refresh_expires_in === "number" && response.refresh_expires_in > 0 ? response.refresh_expires_in : null,
});

export function createOidcClient(options: {
  issuerUrl: string;
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  scope?: string;
}): OidcClient {
  const issuer = new URL(options.issuerUrl);
  let discovered: Promise<oidc.Configuration> | null = null;

  // Cached for the process lifetime once it succeeds; a failed discovery is retried by the next request.
  function configuration(): Promise<oidc.Configuration> {
    discovered ??= oidc
      .discovery(issuer, options.clientId, options.clientSecret, undefined, {
        execute: issuer.protocol === "http:" ? [oidc.allowInsecureRequests] : [],
        timeout: TIMEOUT_SECONDS,
      })
      .catch((error: unknown) => {
        discovered = null;
        return translate(error, () => upstreamError(SERVICE, "The identity provider's discovery document is not usable."));
      });
    return discovered;
  }

  return {
    async authorizationUrl({ state, nonce, codeVerifier }) {
      return oidc.buildAuthorizationUrl(await configuration(), {
        redirect_uri: options.redirectUri,
        scope: options.scope ?? "openid profile email",
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: "S256",
        state,
        nonce,
      });
    },

    async exchangeCode(callbackUrl, { state, nonce, codeVerifier }) {
      const config = await configuration();
      try {
        const response = await oidc.authorizationCodeGrant(config, callbackUrl, {
          expectedState: state,
          expectedNonce: nonce,
          pkceCodeVerifier: codeVerifier,
        });
        return tokensFrom(response);
      } catch (error) {
        return translate(error, (oauthError) => new LoginRejected(oauthError));
      }
    },

    async refresh(refreshToken) {
      const config = await configuration();
      try {
        return tokensFrom(await oidc.refreshTokenGrant(config, refreshToken));
      } catch (error) {
        return translate(error, (oauthError) =>
          oauthError === "invalid_grant" ? new SessionEnded() : upstreamError(SERVICE, "The identity provider refused to renew the session."),
        );
      }
    },

    async endSessionUrl({ idToken, postLogoutRedirectUri }) {
      const config = await configuration();
      if (!config.serverMetadata().end_session_endpoint) return null;
      return oidc.buildEndSessionUrl(config, {
        post_logout_redirect_uri: postLogoutRedirectUri,
        ...(idToken ? { id_token_hint: idToken } : {}),
      });
    },
  };
}
