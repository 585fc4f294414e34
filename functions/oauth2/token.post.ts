import { z } from "zod";
import { readFormBody } from "../../lib/http/body.ts";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { builtinIssuerOf } from "../../lib/identity/builtin-issuer.ts";
import { grantClientCredentials, type TokenRequest } from "../../lib/identity/client-credentials-grant.ts";
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

export default defineRoute({
  method: "POST",
  path: "/oauth2/token",
  access: "public",
  summary: "OAuth2 token endpoint for devices (client-credentials grant)",
  description:
    "Form-encoded like Keycloak's: `grant_type=client_credentials` with `client_id`/`client_secret` in the form or as HTTP Basic. " +
    "Errors carry the OAuth2 `error` code and `error_description` inside the usual envelope. Failed client authentications " +
    "are limited per client_id and per address (OAUTH2_CLIENT_FAILURE_LIMIT, OAUTH2_ADDRESS_FAILURE_LIMIT): beyond them, 429 " +
    "`temporarily_unavailable` with Retry-After. With Keycloak the request goes on to Keycloak's token endpoint and its answer " +
    "comes back (an unreachable Keycloak: 503 `temporarily_unavailable`); the backend learns here that a device holds the new " +
    "secret of its rotation.",
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
  uses: ["builtinIssuer", "tokenPassThrough"],
  async handler(request, { services, clientAddress }) {
    const tokenRequest: TokenRequest = { form: await readFormBody(request), authorization: request.headers.get("authorization"), address: clientAddress };
    if (services.tokenPassThrough) {
      const { body, headers } = await services.tokenPassThrough(tokenRequest);
      return json(body, 200, { "cache-control": "no-store", pragma: "no-cache", ...headers });
    }
    const token = await grantClientCredentials(builtinIssuerOf(services), tokenRequest);
    return json(token, 200, { "cache-control": "no-store", pragma: "no-cache" });
  },
});
