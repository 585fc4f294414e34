import { defineRoute } from "../../../lib/http/route.ts";

// validatorUrl null: Swagger UI would otherwise send the document to an outside validator.
const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>IoT Support Backend API</title>
  <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/api/docs/assets/docs-init.js"></script>
</body>
</html>`;

export default defineRoute({
  method: "GET",
  path: "/api/docs",
  access: "public",
  summary: "Interactive API documentation (Swagger UI, served from local assets)",
  tags: ["Operations"],
  responses: { 200: { description: "HTML page" } },
  uses: [],
  async handler() {
    return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
  },
});
