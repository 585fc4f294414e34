import { z } from "zod";
import { readFormBody } from "../../lib/http/body.ts";
import { refuseUnsafeInput } from "../../lib/safe-input.ts";
import { oauthError } from "../../lib/errors.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { builtinIssuerOf } from "../../lib/identity/builtin-issuer.ts";
import { errorSchema } from "../../lib/schemas.ts";

const tokenResponse = z
  .object({
    access_token: z.string(),
    expires_in: z.number().int(),
    refresh_expires_in: z.literal(0),
    token_type: z.literal("Bearer"),
    "not-before-policy": z.literal(0),
    scope: z.string(),
  })
  .meta({ id: "TokenResponse" });

/** RFC 6749 §2.3.1: `Basic base64(urlencoded(client_id) ":" urlencoded(client_secret))`. */
function basicCredentials(request: Request): { clientId: string; secret: string } | null {
  const match = request.headers.get("authorization")?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
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

export default defineRoute({
  method: "POST",
  path: "/oauth2/token",
  access: "public",
  summary: "OAuth2 token endpoint of the built-in provider (client-credentials grant)",
  description:
    "Form-encoded like Keycloak's: `grant_type=client_credentials` with `client_id`/`client_secret` in the form or as HTTP Basic. " +
    "Errors carry the OAuth2 `error` code and `error_description` inside the usual envelope. Failed client authentications " +
    "are limited per client_id and per address (OAUTH2_CLIENT_FAILURE_LIMIT, OAUTH2_ADDRESS_FAILURE_LIMIT): beyond them, 429 " +
    "`temporarily_unavailable` with Retry-After. Absent (404) when Keycloak is the provider.",
  tags: ["OAuth2"],
  request: {
    rawBody: {
      description: "The client-credentials grant; the client may authenticate with HTTP Basic instead of the form fields",
      content: {
        "application/x-www-form-urlencoded": {
          schema: {
            type: "object",
            properties: { grant_type: { type: "string", enum: ["client_credentials"] }, client_id: { type: "string" }, client_secret: { type: "string" } },
            required: ["grant_type"],
          },
        },
      },
    },
  },
  responses: {
    200: { description: "An access token", content: { "application/json": { schema: tokenResponse } } },
    429: { description: "Too many failed attempts for this client_id or address; Retry-After says when to try again", content: { "application/json": { schema: errorSchema } } },
  },
  async handler(request, { services, clientAddress }) {
    const issuer = builtinIssuerOf(services);
    const form = await readFormBody(request);
    const grant = form.get("grant_type");
    if (!grant) throw oauthError(400, "invalid_request", "grant_type is missing.");
    if (grant !== "client_credentials") throw oauthError(400, "unsupported_grant_type", "Only the client_credentials grant is supported.");

    const basic = basicCredentials(request);
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
    const generation = await issuer.authenticateClient(clientId, secret, clientAddress);
    if (generation === null) throw oauthError(401, "invalid_client", "Invalid client credentials.");
    return json(await issuer.issueToken(clientId, generation), 200, { "cache-control": "no-store", pragma: "no-cache" });
  },
});
