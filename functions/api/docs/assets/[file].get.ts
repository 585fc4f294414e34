import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { z } from "zod";
import { notFound } from "../../../../lib/errors.ts";
import { defineRoute } from "../../../../lib/http/route.ts";

const swaggerDir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
const INIT_SCRIPT = `window.ui = SwaggerUIBundle({ url: "/api/docs/openapi.json", dom_id: "#swagger-ui", validatorUrl: null, deepLinking: true });`;
// A Map, not an object literal: a file name from the URL such as "constructor" must not find Object's prototype.
const ASSETS = new Map([
  ["swagger-ui.css", "text/css; charset=utf-8"],
  ["swagger-ui-bundle.js", "text/javascript; charset=utf-8"],
]);

export default defineRoute({
  method: "GET",
  path: "/api/docs/assets/:file",
  access: "public",
  summary: "Static assets of the API documentation page",
  tags: ["Operations"],
  request: { params: z.object({ file: z.string() }) },
  responses: { 200: { description: "The asset" } },
  uses: [],
  async handler(_request, { params }) {
    const headers = { "cache-control": "public, max-age=86400" };
    if (params.file === "docs-init.js") {
      return new Response(INIT_SCRIPT, { headers: { ...headers, "content-type": "text/javascript; charset=utf-8" } });
    }
    const type = ASSETS.get(params.file);
    if (!type) throw notFound("No such documentation asset.");
    return new Response(await readFile(join(swaggerDir, params.file)), { headers: { ...headers, "content-type": type } });
  },
});
