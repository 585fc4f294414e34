import { z } from "zod";
import { json } from "../../../lib/http/respond.ts";
import { defineRoute } from "../../../lib/http/route.ts";
import { builtinIssuerOf } from "../../../lib/identity/builtin-issuer.ts";

const discovery = z.object({
  issuer: z.string(),
  token_endpoint: z.string(),
  jwks_uri: z.string(),
  grant_types_supported: z.array(z.string()),
  response_types_supported: z.array(z.string()),
  subject_types_supported: z.array(z.string()),
  token_endpoint_auth_methods_supported: z.array(z.string()),
  id_token_signing_alg_values_supported: z.array(z.string()),
});

export default defineRoute({
  method: "GET",
  path: "/oauth2/.well-known/openid-configuration",
  access: "public",
  summary: "Discovery document of the built-in provider",
  tags: ["OAuth2"],
  responses: { 200: { description: "OpenID provider metadata", content: { "application/json": { schema: discovery } } } },
  uses: ["builtinIssuer"],
  async handler(_request, { services }) {
    const issuer = builtinIssuerOf(services);
    return json(
      {
        issuer: issuer.issuer,
        token_endpoint: issuer.tokenEndpoint,
        jwks_uri: issuer.jwksUri,
        grant_types_supported: ["client_credentials"],
        response_types_supported: ["token"],
        subject_types_supported: ["public"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        id_token_signing_alg_values_supported: ["RS256"],
      } satisfies z.input<typeof discovery>,
      200,
      { "cache-control": "public, max-age=300" },
    );
  },
});
