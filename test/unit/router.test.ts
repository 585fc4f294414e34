/** The route table of lib/http/router.ts: what a method and a path lead to (a route, a 405, or nothing). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Route } from "../../lib/http/route.ts";
import { createRouter } from "../../lib/http/router.ts";

/** Only method and path matter to the router; the rest of a Route is left out. */
const route = (method: Route["method"], path: string) => ({ method, path, summary: `${method} ${path}` }) as unknown as Route;

/** The route a match found, or fails. */
function found(match: ReturnType<ReturnType<typeof createRouter>["match"]>) {
  assert.ok(match, "expected a match");
  assert.ok(match.route, "expected a route, not a 405");
  return match;
}

describe("createRouter", () => {
  const list = route("GET", "/api/devices");
  const create = route("POST", "/api/devices");
  const one = route("GET", "/api/devices/:id");
  const logs = route("GET", "/api/devices/:id/logs");
  const root = route("GET", "/");
  const router = createRouter([list, create, one, logs, root]);

  it("matches a literal path with its method and no parameters", () => {
    assert.deepEqual(router.match("GET", "/api/devices"), { route: list, params: {} });
    assert.deepEqual(router.match("POST", "/api/devices"), { route: create, params: {} });
    assert.deepEqual(router.match("GET", "/"), { route: root, params: {} });
  });

  it("gives parameters as sent, percent-encoding kept", () => {
    assert.deepEqual(router.match("GET", "/api/devices/dev-1"), { route: one, params: { id: "dev-1" } });
    assert.deepEqual(router.match("GET", "/api/devices/a%20b/logs"), { route: logs, params: { id: "a%20b" } });
    assert.deepEqual(router.match("GET", "/api/devices/a%2Fb"), { route: one, params: { id: "a%2Fb" } });
  });

  it("never gives an empty parameter", () => {
    assert.equal(router.match("GET", "/api/devices//logs"), null);
    assert.equal(createRouter([one]).match("GET", "/api/devices//"), null);
  });

  it("ignores trailing slashes, on the request and on the pattern", () => {
    assert.equal(found(router.match("GET", "/api/devices/")).route, list);
    assert.equal(found(router.match("GET", "/api/devices///")).route, list);
    assert.deepEqual(router.match("GET", "/api/devices/dev-1/"), { route: one, params: { id: "dev-1" } });
    assert.deepEqual(router.match("GET", "/api/devices/dev-1/logs/"), { route: logs, params: { id: "dev-1" } });
    const slashed = route("GET", "/api/things/");
    const slashedParam = route("GET", "/api/things/:id/");
    const other = createRouter([slashed, slashedParam]);
    assert.equal(found(other.match("GET", "/api/things")).route, slashed);
    assert.deepEqual(other.match("GET", "/api/things/7"), { route: slashedParam, params: { id: "7" } });
  });

  it("answers a 405 with every method of the path, HEAD added when GET is there", () => {
    const deleteOnly = createRouter([route("DELETE", "/api/x"), route("PUT", "/api/x")]);
    const match = deleteOnly.match("GET", "/api/x");
    assert.ok(match && match.route === null);
    assert.deepEqual([...match.allowed].sort(), ["DELETE", "PUT"]);

    const withGet = router.match("DELETE", "/api/devices");
    assert.ok(withGet && withGet.route === null);
    assert.deepEqual([...withGet.allowed].sort(), ["GET", "HEAD", "POST"]);
  });

  it("puts the methods of the literal and the parameter patterns a path fits into one 405", () => {
    const literalPut = route("PUT", "/api/devices/bulk");
    const paramDelete = route("DELETE", "/api/devices/:id");
    const paramGet = route("GET", "/api/:kind/bulk");
    const mixed = createRouter([literalPut, paramDelete, paramGet]);
    const match = mixed.match("POST", "/api/devices/bulk");
    assert.ok(match && match.route === null);
    assert.deepEqual([...match.allowed].sort(), ["DELETE", "GET", "HEAD", "PUT"]);
  });

  it("answers null for a path no pattern fits", () => {
    assert.equal(router.match("GET", "/api/nothing"), null);
    assert.equal(router.match("GET", "/api/devices/dev-1/logs/more"), null);
    assert.equal(router.match("GET", "/api"), null);
    assert.equal(router.match("GET", "/API/devices"), null);
    assert.equal(createRouter([]).match("GET", "/"), null);
  });

  it("prefers a literal pattern over a parameter pattern of the same shape", () => {
    const literalGet = route("GET", "/api/devices/export");
    // Built in either order, the literal route answers.
    for (const routes of [
      [one, literalGet],
      [literalGet, one],
    ]) {
      const table = createRouter(routes);
      assert.deepEqual(table.match("GET", "/api/devices/export"), { route: literalGet, params: {} });
      assert.deepEqual(table.match("GET", "/api/devices/dev-1"), { route: one, params: { id: "dev-1" } });
    }
  });

  it("lets a parameter route answer a method the literal pattern lacks", () => {
    const literalPost = route("POST", "/api/devices/export");
    const paramDelete = route("DELETE", "/api/devices/:id");
    const table = createRouter([literalPost, paramDelete, one]);
    assert.deepEqual(table.match("POST", "/api/devices/export"), { route: literalPost, params: {} });
    assert.deepEqual(table.match("DELETE", "/api/devices/export"), { route: paramDelete, params: { id: "export" } });
    assert.deepEqual(table.match("GET", "/api/devices/export"), { route: one, params: { id: "export" } });
  });

  it("compares literal segments of a parameter pattern exactly", () => {
    const table = createRouter([logs]);
    assert.equal(table.match("GET", "/api/devices/dev-1/log"), null);
    assert.equal(table.match("GET", "/api/devices/dev-1/Logs"), null);
    assert.equal(table.match("GET", "/api/gadgets/dev-1/logs"), null);
  });

  it("takes several parameters", () => {
    const two = route("GET", "/api/devices/:id/files/:name");
    assert.deepEqual(createRouter([two]).match("GET", "/api/devices/d1/files/core.bin"), {
      route: two,
      params: { id: "d1", name: "core.bin" },
    });
  });

  it("refuses two routes with the same method and path when built", () => {
    assert.throws(() => createRouter([route("GET", "/api/devices"), route("GET", "/api/devices")]), /Two routes for GET \/api\/devices/);
    assert.throws(() => createRouter([route("GET", "/api/devices/:id"), route("GET", "/api/devices/:id")]), /Two routes/);
    // A trailing slash does not make another path.
    assert.throws(() => createRouter([route("GET", "/api/devices"), route("GET", "/api/devices/")]), /Two routes/);
    // Another method on the same path is fine.
    assert.doesNotThrow(() => createRouter([route("GET", "/api/devices/:id"), route("PUT", "/api/devices/:id")]));
  });
});
