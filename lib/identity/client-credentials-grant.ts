import { oauthError } from "../errors.ts";
import { refuseUnsafeInput } from "../safe-input.ts";
import type { BuiltinIssuer } from "./builtin-issuer.ts";

/** A token request as it came: the form, the Authorization header, the address it came from (for the limits). */
export type TokenRequest = { form: URLSearchParams; authorization: string | null; address: string | null };

/** RFC 6749 §2.3.1: `Basic base64(urlencoded(client_id) ":" urlencoded(client_secret))`. */
function basicCredentials(authorization: string | null): { clientId: string; secret: string } | null {
  const match = authorization?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  try {
    if (colon < 0) throw new Error("no colon");
    return { clientId: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)) };
  } catch {
    throw oauthError(401, "invalid_client", "The Basic authorization header is malformed.");
  }
}

/**
 * The client and secret of a client-credentials grant, from the form or HTTP Basic; every refusal is an OAuth2-shaped
 * error. The same checks for the built-in endpoint and the Keycloak pass-through.
 */
export function clientCredentialsOf({ form, authorization }: TokenRequest): { clientId: string; secret: string } {
  const grant = form.get("grant_type");
  if (!grant) throw oauthError(400, "invalid_request", "grant_type is missing.");
  if (grant !== "client_credentials") throw oauthError(400, "unsupported_grant_type", "Only the client_credentials grant is supported.");

  const basic = basicCredentials(authorization);
  if (basic && form.has("client_secret")) {
    throw oauthError(400, "invalid_request", "Send the client secret either as HTTP Basic or in the form, not both.");
  }
  const clientId = basic?.clientId ?? form.get("client_id");
  const secret = basic?.secret ?? form.get("client_secret");
  if (!clientId || !secret) throw oauthError(401, "invalid_client", "Client credentials are missing.");
  refuseUnsafeInput({ client_id: clientId, client_secret: secret });
  if (basic && form.has("client_id") && form.get("client_id") !== basic.clientId) {
    throw oauthError(400, "invalid_request", "client_id in the form differs from the Basic credentials.");
  }
  return { clientId, secret };
}

/** The client-credentials grant of the built-in token endpoint. */
export async function grantClientCredentials(issuer: BuiltinIssuer, request: TokenRequest) {
  const { clientId, secret } = clientCredentialsOf(request);
  const generation = await issuer.authenticateClient(clientId, secret, request.address);
  if (generation === null) throw oauthError(401, "invalid_client", "Invalid client credentials.");
  return issuer.issueToken(clientId, generation);
}
