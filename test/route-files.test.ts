import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { allRoutes, routesFor } from "../functions/index.ts";
import type { Route } from "../lib/http/route.ts";
import { label } from "./support/routes.ts";

const FUNCTIONS_DIR = fileURLToPath(new URL("../functions/", import.meta.url));
const ROUTE_FILE = /^(?<name>.+)\.(?<method>get|post|put|delete)\.ts$/;

/** Route files relative to functions/, e.g. api/devices/[id]/index.get.ts; the route list itself is not one. */
const routeFiles = readdirSync(FUNCTIONS_DIR, { recursive: true, withFileTypes: true })
  .filter((entry) => entry.isFile())
  .map((entry) => relative(FUNCTIONS_DIR, join(entry.parentPath, entry.name)).split(sep).join("/"))
  .filter((file) => file !== "index.ts")
  .sort();

/** What a file's path says about its route: `index` stands for its folder, `[x]` for the parameter `:x`. */
function expectedRoute(file: string): { method: string; path: string } | null {
  const segments = file.split("/");
  const match = ROUTE_FILE.exec(segments.pop()!);
  if (!match) return null;
  const { name, method } = match.groups!;
  if (name !== "index") segments.push(name!);
  const path = segments.map((segment) => segment.replace(/^\[(\w+)\]$/, ":$1")).join("/");
  return { method: method!.toUpperCase(), path: `/${path}` };
}

type Loaded = { file: string; expected: { method: string; path: string } | null; route?: Route; error?: string };

const loaded: Loaded[] = await Promise.all(
  routeFiles.map(async (file) => {
    const expected = expectedRoute(file);
    if (!expected) return { file, expected };
    try {
      return { file, expected, route: (await import(pathToFileURL(join(FUNCTIONS_DIR, file)).href)).default };
    } catch (error) {
      return { file, expected, error: (error as Error).message };
    }
  }),
);

test("every file in functions/ is named <name>.<method>.ts, and its method and path follow from its file path", () => {
  const problems: string[] = [];
  for (const { file, expected, route, error } of loaded) {
    if (!expected) problems.push(`functions/${file}: not named <name>.<get|post|put|delete>.ts`);
    else if (error) problems.push(`functions/${file}: cannot be imported (${error})`);
    else if (!route?.method || !route.path) problems.push(`functions/${file}: its default export is not a route (defineRoute)`);
    else if (route.method !== expected.method || route.path !== expected.path) {
      problems.push(`functions/${file}: declares ${label(route)}, but its file path says ${expected.method} ${expected.path}`);
    }
  }
  assert.deepEqual(problems, []);
});

test("every file in functions/ is in the full route list (functions/index.ts)", () => {
  const missing = loaded.filter(({ route }) => route && !allRoutes.includes(route)).map(({ file }) => `functions/${file}`);
  assert.deepEqual(missing, [], "route files that functions/index.ts does not list");
});

test("every route in the list comes from a file in functions/ (or is an /iot route's copy under /api)", () => {
  const fromFiles = new Set(loaded.map(({ route }) => route && label(route)));
  const orphans = allRoutes
    .map(label)
    .filter((name) => !fromFiles.has(name) && !fromFiles.has(name.replace(" /api/iot/", " /iot/")));
  assert.deepEqual(orphans, [], "routes in functions/index.ts without a file of their own");
});

test("the routes served leave out exactly those of a provider that is off (built-in token keys, browser login, sign-in page, testing mode)", () => {
  const on = { builtinIssuer: {}, browserSession: {}, localSignIn: {}, testing: {} } as unknown as Parameters<typeof routesFor>[0];
  const missingWith = (services: Partial<typeof on>) => {
    const served = routesFor({ ...on, ...services });
    return allRoutes.filter((route) => !served.includes(route)).map(label);
  };
  assert.deepEqual(missingWith({}), []);
  // POST /oauth2/token stays: with Keycloak it is the pass-through to Keycloak's token endpoint.
  assert.deepEqual(missingWith({ builtinIssuer: null }), ["GET /oauth2/jwks", "GET /oauth2/.well-known/openid-configuration"]);
  assert.deepEqual(missingWith({ browserSession: null }), ["GET /api/auth/callback"]);
  assert.deepEqual(missingWith({ localSignIn: null }), ["POST /api/auth/login"]);
  assert.deepEqual(missingWith({ browserSession: null, localSignIn: null }), ["GET /api/auth/login", "POST /api/auth/login", "GET /api/auth/callback"]);
  assert.deepEqual(missingWith({ testing: null }), [
    "POST /api/testing/auth/session",
    "POST /api/testing/auth/clear",
    "POST /api/testing/auth/force-error",
    "POST /api/testing/keycloak-cleanup",
  ]);
});
