/**
 * Every route of the OpenAPI document, fuzzed (issue 10): fast-check generates requests from each route's own
 * schemas and media types (test/support/fuzz/), each sent with admin, device or broken credentials through the app
 * on a real PostgreSQL. Whatever the input: no 5xx, the error envelope on every 4xx, a refusal wherever the route's
 * documentation says the input is wrong, and no data changed. `npm test` uses a fixed seed; `npm run fuzz` a random
 * one, printed so that FUZZ_SEED=<seed> replays it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { allRoutes, routesFor } from "../functions/index.ts";
import { buildOpenApiDocument } from "../lib/http/openapi.ts";
import { fuzzRoute, fuzzSettings } from "./support/fuzz/run.ts";
import { openFuzzTarget, type FuzzTarget } from "./support/fuzz/target.ts";
import { label } from "./support/routes.ts";

const settings = fuzzSettings();

/**
 * Two configurations between them serve every route: browser login against Keycloak (the main one, with TESTING_MODE),
 * and the same without OIDC, which serves the sign-in page's form instead (functions/index.ts routesFor). Each route
 * is fuzzed in the first configuration that serves it.
 */
const withOidc = { builtinIssuer: {}, browserSession: {}, localSignIn: null, testing: {} } as unknown as Parameters<typeof routesFor>[0];
const servedWithOidc = new Set(routesFor(withOidc));
const configurations = [
  { name: "with OIDC browser login", oidc: true, routes: allRoutes.filter((route) => servedWithOidc.has(route)) },
  { name: "without OIDC (the sign-in page)", oidc: false, routes: allRoutes.filter((route) => !servedWithOidc.has(route)) },
];

for (const configuration of configurations) {
  describe(`fuzzing every route ${configuration.name}: seed ${settings.seed}, ${settings.runs} requests per route (replay: FUZZ_SEED=${settings.seed} npm run fuzz)`, () => {
    let target: FuzzTarget;
    // One target at a time (each captures uncaught errors): the first configuration's is closed before this one opens.
    before(async () => {
      target = await openFuzzTarget({ oidc: configuration.oidc });
    });
    after(async () => {
      console.log(`fuzz (${configuration.name}): ${target?.sent} requests on ${configuration.routes.length} routes, seed ${settings.seed}`);
      await target?.close();
    });

    test("the routes served are the operations of the OpenAPI document", () => {
      const { routes } = target.app;
      const operations = Object.entries(buildOpenApiDocument(routes).paths ?? {}).flatMap(([path, item]) =>
        Object.keys(item ?? {}).map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`),
      );
      assert.deepEqual(operations.sort(), routes.map(label).sort());
    });

    for (const route of configuration.routes) {
      test(label(route), async (t) => {
        assert.ok(target.app.routes.includes(route), `${label(route)} is not served ${configuration.name}`);
        const before = target.sent;
        await fuzzRoute(target, route, settings);
        t.diagnostic(`${target.sent - before} requests`);
      });
    }
  });
}
