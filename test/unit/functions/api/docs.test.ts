/** Unit tests of functions/api/docs/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import assets from "../../../../functions/api/docs/assets/[file].get.ts";
import docs from "../../../../functions/api/docs/index.get.ts";
import openApi from "../../../../functions/api/docs/openapi.json.get.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { expectError, request, unitApp } from "../../harness.ts";

describe("functions/api/docs/index.get.ts", () => {
  it("serves the Swagger UI page from local assets, to anybody", async () => {
    const response = await unitApp().run(docs, request("GET", "/api/docs"));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
    const page = await response.text();
    assert.match(page, /\/api\/docs\/assets\/swagger-ui-bundle\.js/);
    assert.doesNotMatch(page, /https?:\/\//, "no outside resources");
  });
});

describe("functions/api/docs/openapi.json.get.ts", () => {
  it("serves the OpenAPI 3.1 document of the app's routes", async () => {
    const { edge, services } = unitApp();
    const response = await runRoute(openApi, request("GET", "/api/docs/openapi.json"), { ...edge, config: services.config });
    assert.equal(response.status, 200);
    const document = await response.json();
    assert.match(document.openapi, /^3\.1/);
    assert.ok(document.paths["/api/docs/openapi.json"]?.get, "the route itself is documented");
  });
});

describe("functions/api/docs/assets/[file].get.ts", () => {
  it("serves the init script and the Swagger UI files with their types, cacheable", async () => {
    const app = unitApp();
    const init = await app.run(assets, request("GET", "/api/docs/assets/docs-init.js"));
    assert.match(await init.text(), /validatorUrl: null/);
    const css = await app.run(assets, request("GET", "/api/docs/assets/swagger-ui.css"));
    assert.equal(css.status, 200);
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal(css.headers.get("cache-control"), "public, max-age=86400");
  });

  it("answers 404 for any other name, also one that Object's prototype has or that climbs out", async () => {
    const app = unitApp();
    for (const file of ["index.html", "constructor", "..%2Fpackage.json", "swagger-ui.css.map"]) {
      await expectError(await app.run(assets, request("GET", `/api/docs/assets/${file}`)), 404, "NOT_FOUND");
    }
  });
});
