import { defineRoute } from "../../../lib/http/route.ts";
import { json } from "../../../lib/http/respond.ts";
import { buildOpenApiDocument } from "../../../lib/http/openapi.ts";

export default defineRoute({
  method: "GET",
  path: "/api/docs/openapi.json",
  access: "public",
  summary: "The OpenAPI 3.1 document of this API",
  tags: ["Operations"],
  responses: { 200: { description: "OpenAPI 3.1 JSON" } },
  uses: ["config"],
  async handler(_request, { routes, services }) {
    return json(buildOpenApiDocument(routes, services.config.BASEURL));
  },
});
