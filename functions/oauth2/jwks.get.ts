import { z } from "zod";
import { json } from "../../lib/http/respond.ts";
import { defineRoute } from "../../lib/http/route.ts";
import { builtinIssuerOf } from "../../lib/identity/builtin-issuer.ts";

export default defineRoute({
  method: "GET",
  path: "/oauth2/jwks",
  access: "public",
  summary: "Public signing keys of the built-in provider (JWKS)",
  tags: ["OAuth2"],
  responses: {
    200: {
      description: "A JSON Web Key Set",
      content: { "application/json": { schema: z.object({ keys: z.array(z.record(z.string(), z.string())) }) } },
    },
  },
  uses: ["builtinIssuer"],
  async handler(_request, { services }) {
    return json(await builtinIssuerOf(services).jwks(), 200, { "cache-control": "public, max-age=300" });
  },
});
