/**
 * Every route of the OpenAPI document, fuzzed (issue 10): fast-check generates requests from each route's own
 * schemas and media types (test/support/fuzz/), each sent with admin, device or broken credentials through the app
 * on a real PostgreSQL. Whatever the input: no 5xx, the error envelope on every 4xx, a refusal wherever the route's
 * documentation says the input is wrong, and no data changed. `npm test` uses a fixed seed; `npm run fuzz` a random
 * one, printed so that FUZZ_SEED=<seed> replays it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { allRoutes } from "../functions/index.ts";
import { buildOpenApiDocument } from "../lib/http/openapi.ts";
import { fuzzRoute, fuzzSettings } from "./support/fuzz/run.ts";
import { openFuzzTarget, type FuzzTarget } from "./support/fuzz/target.ts";
import { label } from "./support/routes.ts";

const settings = fuzzSettings();

describe(`fuzzing every route: seed ${settings.seed}, ${settings.runs} requests per route (replay: FUZZ_SEED=${settings.seed} npm run fuzz)`, () => {
  let target: FuzzTarget;

  before(async () => {
    target = await openFuzzTarget();
  });
  after(async () => {
    console.log(`fuzz: ${target?.sent} requests on ${target?.app.routes.length} routes, seed ${settings.seed}`);
    await target?.close();
  });

  test("the routes walked are the operations of the OpenAPI document", () => {
    const { routes } = target.app;
    const operations = Object.entries(buildOpenApiDocument(routes).paths ?? {}).flatMap(([path, item]) =>
      Object.keys(item ?? {}).map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`),
    );
    assert.deepEqual(operations.sort(), routes.map(label).sort());
  });

  for (const route of allRoutes) {
    test(label(route), async (t) => {
      if (!target.app.routes.includes(route)) return t.skip("not served in this configuration (functions/index.ts routesFor)");
      const before = target.sent;
      await fuzzRoute(target, route, settings);
      t.diagnostic(`${target.sent - before} requests`);
    });
  }
});
