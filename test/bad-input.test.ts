/**
 * Every route of functions/index.ts (new routes are picked up automatically) against bad input: each answer is the
 * error envelope with the right status, never a 500 or internal text, and no data changes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { allRoutes } from "../functions/index.ts";
import type { Route } from "../lib/http/route.ts";
import { ADMIN_TOKEN, createTestApp, type TestApp } from "./support/app.ts";
import { assertErrorEnvelope, snapshotData } from "./support/envelope.ts";
import { unsignedJwt } from "./support/jwt.ts";
import { bodyJsonSchema, concrete, label, sampleValue, typesOf, type JsonSchema } from "./support/routes.ts";

const BASE = "http://iot.test";
const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;

const bodyRoutes = allRoutes.filter((route) => route.request?.body);
const idRoutes = allRoutes.filter((route) => /:id\b/.test(route.path) && route.access !== "device");

/** A value none of the field's declared types accepts, or undefined for a field that accepts anything. */
function wrongValue(schema: JsonSchema): unknown {
  const types = typesOf(schema);
  if (types.length === 0) return undefined;
  const jsonType = (value: unknown) =>
    Array.isArray(value) ? "array" : value === null ? "null" : Number.isInteger(value) ? "integer" : typeof value;
  const accepts = (value: unknown) => types.some((type) => type === jsonType(value) || (type === "number" && jsonType(value) === "integer"));
  return [12345, "text", true, { nested: 1 }, [1], 1.5].find((value) => !accepts(value));
}

describe("bad input on every route", () => {
  let app: TestApp;
  let before_: Record<string, string>;
  let deviceToken: string;

  const send = (method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string>; token?: string | null } = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    const token = init.token === undefined ? ADMIN_TOKEN : init.token;
    if (token) headers.authorization = `Bearer ${token}`;
    return app.fetch(new Request(`${BASE}${path}`, { method, headers, body: init.body }));
  };
  // Each route with its own kind of token, so that the input is what gets refused.
  const sendJson = (route: Route, body: BodyInit, contentType: string | null = "application/json", path = concrete(route.path)) =>
    send(route.method, path, { body, headers: contentType ? { "content-type": contentType } : {}, token: route.access === "device" ? deviceToken : undefined });

  before(async () => {
    // TESTING_MODE: the testing routes are in allRoutes too, and must refuse bad input like every other.
    app = await createTestApp({ env: { ROTATION_SCHEDULER: "external", TESTING_MODE: "true" } });
    // Some data, so that "nothing changed" means something.
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "seed", name: "Seed" } })).json();
    const device = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: '{"deviceName": "seed"}' } });
    assert.equal(device.status, 201);
    deviceToken = (await app.services.builtinIssuer!.issueToken((await device.json()).client_id, 1)).access_token;
    before_ = await snapshotData(app);
  });

  after(async () => {
    // Whatever the bad input was, no data changed.
    if (before_) assert.deepEqual(await snapshotData(app), before_);
    await app.close();
  });

  test("the route list has routes with JSON bodies and with ids (the checks below are not vacuous)", () => {
    assert.ok(bodyRoutes.length >= 4, bodyRoutes.map(label).join(", "));
    assert.ok(idRoutes.length >= 6, idRoutes.map(label).join(", "));
  });

  test("malformed JSON → 400", async () => {
    for (const route of bodyRoutes) {
      for (const text of ['{"code": ', "{'code': 'x'}", '{"a": 1} trailing', "nul", "\u00ff\u00fe"]) {
        await assertErrorEnvelope(await sendJson(route, text), 400, `${label(route)} with ${JSON.stringify(text)}`);
      }
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("wrong or missing content type → 415", async () => {
    for (const route of bodyRoutes) {
      const valid = JSON.stringify(sampleValue(bodyJsonSchema(route)));
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/jsonx", null]) {
        const body = await assertErrorEnvelope(await sendJson(route, new TextEncoder().encode(valid), type), 415, `${label(route)} as ${type}`);
        assert.equal(body.code, "UNSUPPORTED_MEDIA_TYPE");
      }
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("a body over 1 MiB → 413", async () => {
    const huge = JSON.stringify({ code: "x".repeat(1024 * 1024), name: "big", config: "y".repeat(1024) });
    for (const route of bodyRoutes) {
      const body = await assertErrorEnvelope(await sendJson(route, huge), 413, `${label(route)} with ${huge.length} bytes`);
      assert.equal(body.code, "PAYLOAD_TOO_LARGE");
      // A lying Content-Length is caught by the streamed count as well; an honest large one before reading.
      const declared = await send(route.method, concrete(route.path), {
        body: huge,
        headers: { "content-type": "application/json", "content-length": String(huge.length) },
        token: route.access === "device" ? deviceToken : undefined,
      });
      await assertErrorEnvelope(declared, 413, `${label(route)} with Content-Length ${huge.length}`);
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("empty body, and JSON that is not an object → 400", async () => {
    for (const route of bodyRoutes) {
      for (const text of ["", "   \n", "[]", '"text"', "42", "null", "true", "[{}]"]) {
        await assertErrorEnvelope(await sendJson(route, text), 400, `${label(route)} with ${JSON.stringify(text)}`);
      }
      const noBody = await send(route.method, concrete(route.path), { headers: { "content-type": "application/json" }, token: route.access === "device" ? deviceToken : undefined });
      await assertErrorEnvelope(noBody, 400, `${label(route)} without a body`);
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("unknown fields → 400 VALIDATION_FAILED naming the field (where the body's schema is closed)", async () => {
    // An open schema (POST /iot/state: newer firmware may send more) documents that it ignores what it does not know.
    for (const route of bodyRoutes.filter((route) => bodyJsonSchema(route).additionalProperties === false)) {
      const body = { ...(sampleValue(bodyJsonSchema(route)) as object), definitely_not_a_field: 1 };
      const envelope = await assertErrorEnvelope(await sendJson(route, JSON.stringify(body)), 400, `${label(route)} with an unknown field`);
      assert.equal(envelope.code, "VALIDATION_FAILED");
      const fields = (envelope.details!.errors as { field: string; message: string }[]).map((error) => error.field);
      assert.ok(fields.includes("definitely_not_a_field"), `${label(route)}: ${JSON.stringify(envelope.details)}`);
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("a wrong type in each field → 400 VALIDATION_FAILED naming the field", async () => {
    let checked = 0;
    for (const route of bodyRoutes) {
      const schema = bodyJsonSchema(route);
      for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
        const wrong = wrongValue(fieldSchema);
        if (wrong === undefined) continue;
        const body = { ...(sampleValue(schema) as object), [field]: wrong };
        const where = `${label(route)} with ${field}=${JSON.stringify(wrong)}`;
        const envelope = await assertErrorEnvelope(await sendJson(route, JSON.stringify(body)), 400, where);
        assert.equal(envelope.code, "VALIDATION_FAILED", where);
        const errors = envelope.details!.errors as { field: string; message: string }[];
        assert.ok(errors.some((error) => error.field === field || error.field.startsWith(`${field}.`)), `${where}: ${JSON.stringify(errors)}`);
        assert.ok(errors.every((error) => typeof error.message === "string" && error.message.length > 0), where);
        checked++;
      }
    }
    assert.ok(checked >= 5, `only ${checked} fields checked`);
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("ids that are not positive integers, too large, or unknown → JSON 404", async () => {
    for (const route of idRoutes) {
      const body = route.request?.body ? JSON.stringify(sampleValue(bodyJsonSchema(route))) : undefined;
      const headers: Record<string, string> = body ? { "content-type": "application/json" } : {};
      // The seeded model and device have id 1: spellings that Number() reads as 1 must not reach them.
      const notDecimal = ["0b1", "0x1", "0o1", "+1", "%201", "1%20", "1e0", "1.0", "01", "%31", "1%00"];
      for (const id of ["abc", "0", "-1", "1.5", "1e3", "0x10", "99999999999", "2147483647", "2147483648", "%20", "1%2F2", ...notDecimal]) {
        const response = await send(route.method, concrete(route.path, id), { body, headers });
        const envelope = await assertErrorEnvelope(response, 404, `${route.method} ${concrete(route.path, id)}`);
        assert.match(envelope.code, /NOT_FOUND$/);
      }
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("numeric query parameters take plain decimal digits within range only → 400", async () => {
    for (const value of ["0b1", "0x1", "+1", "%201", "1e0", "1.0", "0", "-1", "2147483648", "99999999999999999999", "", "abc", "1%00"]) {
      const envelope = await assertErrorEnvelope(await send("GET", `/api/devices?model_id=${value}`), 400, `model_id=${value}`);
      assert.equal(envelope.code, "VALIDATION_FAILED");
      assert.equal((envelope.details!.errors as { field: string }[])[0]!.field, "model_id");
    }
    const filtered = await send("GET", "/api/devices?model_id=1");
    assert.equal(filtered.status, 200);
    assert.equal((await filtered.json()).count, 1);
  });

  test("text with a NUL character is refused with 400 wherever it is sent, and stores nothing", async () => {
    const attempts: [string, string, BodyInit, string][] = [
      ["POST", "/api/device-models", JSON.stringify({ code: "nul", name: "a\u0000b" }), "name"],
      ["POST", "/api/device-models", JSON.stringify({ code: "nul", name: "ok", "x\u0000": 1 }), "x\u0000"],
      ["PUT", "/api/device-models/1", JSON.stringify({ name: "\u0000" }), "name"],
      ["POST", "/api/devices", JSON.stringify({ device_model_id: 1, config: '{"deviceName": "a\\u0000b"}' }), "config.deviceName"],
      ["PUT", "/api/devices/1", JSON.stringify({ config: '{"nested": {"deep": ["\\u0000"]}}' }), "config.nested.deep.0"],
      ["PUT", "/api/devices/1", JSON.stringify({ config: '{"key\\u0000": 1}' }), "config.key\u0000"],
    ];
    for (const [method, path, body, field] of attempts) {
      const envelope = await assertErrorEnvelope(await send(method, path, { body, headers: { "content-type": "application/json" } }), 400, `${method} ${path} ${body}`);
      assert.equal(envelope.code, "VALIDATION_FAILED");
      assert.deepEqual((envelope.details!.errors as { field: string }[]).map((error) => error.field), [field], String(body));
      assert.match(envelope.error, /NUL/);
    }
    for (const query of ["rotation_state=OK%00", "model_id=1%00"]) {
      await assertErrorEnvelope(await send("GET", `/api/devices?${query}`), 400, query);
    }
    const form = { "content-type": "application/x-www-form-urlencoded" };
    for (const body of ["grant_type=client_credentials&client_id=x%00&client_secret=y", "grant_type=client_credentials&client_id=x&client_secret=%00", "grant_type=client_credentials%00"]) {
      await assertErrorEnvelope(await send("POST", "/oauth2/token", { token: null, body, headers: form }), 400, body);
    }
    const basic = `Basic ${Buffer.from("iotdevice-x%00:secret").toString("base64")}`;
    const viaBasic = await send("POST", "/oauth2/token", { token: null, body: "grant_type=client_credentials", headers: { ...form, authorization: basic } });
    await assertErrorEnvelope(viaBasic, 400, "NUL in HTTP Basic credentials");
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("JSON nested deeper than 64 levels is refused with 400, in a body and inside a device config", async () => {
    const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
    for (const depth of [65, 10_000, 200_000]) {
      for (const route of bodyRoutes) {
        const body = `{"unknown": ${nested(depth)}}`;
        const envelope = await assertErrorEnvelope(await sendJson(route, body), 400, `${label(route)} nested ${depth} deep`);
        assert.deepEqual(envelope.details!.errors, [{ field: "body", message: "is nested deeper than 64 levels" }]);
      }
      const config = JSON.stringify({ config: `{"a": ${nested(depth)}}` });
      const envelope = await assertErrorEnvelope(await send("PUT", "/api/devices/1", { body: config, headers: { "content-type": "application/json" } }), 400, `config ${depth} deep`);
      assert.deepEqual(envelope.details!.errors, [{ field: "config.a", message: "is nested deeper than 64 levels" }]);
    }
    assert.deepEqual(await snapshotData(app), before_);
    // 60 levels are fine (a device of another model, so the seeded data stays as it was).
    const other = await (await app.call("POST", "/api/device-models", { body: { code: "deep", name: "Deep" } })).json();
    const created = await app.call("POST", "/api/devices", { body: { device_model_id: other.id, config: `{"a": ${nested(60)}}` } });
    assert.equal(created.status, 201);
    assert.equal((await app.call("DELETE", `/api/devices/${(await created.json()).id}`)).status, 204);
    assert.equal((await app.call("DELETE", `/api/device-models/${other.id}`)).status, 204);
    // Those four changes stay in the audit trail (append-only): the baseline of the tests below includes them.
    before_ = await snapshotData(app);
  });

  test("names of Object's prototype in the path, the query or a body find nothing", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "prototype"]) {
      await assertErrorEnvelope(await send("GET", `/api/docs/assets/${name}`), 404, `docs asset ${name}`);
      await assertErrorEnvelope(await send("GET", `/api/devices/${name}`), 404, `device ${name}`);
      await assertErrorEnvelope(await send("GET", `/api/devices?${name}=1`), 400, `query ${name}`);
      const body = `{"code": "proto", "name": "x", "${name}": {"admin": true}}`;
      await assertErrorEnvelope(await send("POST", "/api/device-models", { body, headers: { "content-type": "application/json" } }), 400, `body key ${name}`);
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("unknown routes → 404 ROUTE_NOT_FOUND", async () => {
    const paths = ["/api/does-not-exist", "/api/devices/1/does-not-exist", "/api/device-models/1/2/3", "/nothing-here", "/api/", "/iot/nothing"];
    for (const path of paths) {
      for (const method of ["GET", "POST", "DELETE"]) {
        const envelope = await assertErrorEnvelope(await send(method, path), 404, `${method} ${path}`);
        assert.equal(envelope.code, "ROUTE_NOT_FOUND", `${method} ${path}`);
      }
    }
  });

  test("a method the path does not serve → 405 with Allow", async () => {
    const byPath = new Map<string, Set<string>>();
    for (const route of app.routes) byPath.set(route.path, (byPath.get(route.path) ?? new Set()).add(route.method));
    for (const [path, served] of byPath) {
      const allowed = new Set(served);
      if (allowed.has("GET")) allowed.add("HEAD");
      for (const method of METHODS.filter((m) => !allowed.has(m))) {
        const response = await send(method, concrete(path), { body: method === "GET" ? undefined : "{}", headers: { "content-type": "application/json" } });
        const where = `${method} ${concrete(path)}`;
        assert.deepEqual(new Set(response.headers.get("allow")?.split(/,\s*/)), allowed, `Allow of ${where}`);
        const envelope = await assertErrorEnvelope(response, 405, where);
        assert.equal(envelope.code, "METHOD_NOT_ALLOWED");
      }
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("admin routes without a token or with a bad one → 401", async () => {
    const admin = app.routes.filter((route) => route.access === "admin");
    assert.ok(admin.length > 0);
    const fakeJwt = unsignedJwt({ sub: "x", roles: ["admin"], exp: 4102444800 }, { alg: "RS256", kid: "nope", typ: "JWT" });
    for (const route of admin) {
      const path = concrete(route.path);
      const headers = route.request?.body ? { "content-type": "application/json" } : undefined;
      const body = route.request?.body ? JSON.stringify(sampleValue(bodyJsonSchema(route))) : undefined;
      const attempts: [string, Record<string, string>][] = [
        ["no token", {}],
        ["a wrong token", { authorization: "Bearer not-the-admin-token" }],
        ["the admin token with one character changed", { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}X` }],
        ["an unsigned JWT", { authorization: `Bearer ${fakeJwt}` }],
        ["basic auth", { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString("base64")}` }],
        ["an empty bearer", { authorization: "Bearer " }],
      ];
      for (const [what, auth] of attempts) {
        const response = await send(route.method, path, { token: null, body, headers: { ...headers, ...auth } });
        await assertErrorEnvelope(response, 401, `${label(route)} with ${what}`);
      }
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("device routes without a token, with a bad one or with the admin token → 401/403", async () => {
    for (const route of app.routes.filter((r) => r.access === "device")) {
      const path = concrete(route.path);
      await assertErrorEnvelope(await send(route.method, path, { token: null }), 401, `${label(route)} without a token`);
      await assertErrorEnvelope(await send(route.method, path, { token: "not.a.jwt" }), 401, `${label(route)} with a bad token`);
      await assertErrorEnvelope(await send(route.method, path, { token: ADMIN_TOKEN }), [401, 403], `${label(route)} with the admin token`);
    }
    assert.deepEqual(await snapshotData(app), before_);
  });

  test("a safe X-Request-Id is echoed, also as correlationId; an unsafe one is replaced", async () => {
    const ok = await send("GET", "/api/health/live", { headers: { "x-request-id": "my-trace.42:a_b-c" } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-request-id"), "my-trace.42:a_b-c");
    const failed = await send("GET", "/api/devices/99999", { headers: { "x-request-id": "trace-404" } });
    assert.equal((await assertErrorEnvelope(failed, 404, "unknown device")).correlationId, "trace-404");

    const generated = await send("GET", "/api/health/live");
    assert.match(generated.headers.get("x-request-id") ?? "", SAFE_REQUEST_ID);
    for (const unsafe of ["x".repeat(129), "has space", "semi;colon", "<script>", "a/b", "quote\"d", "new%0Aline"]) {
      const response = await send("GET", "/api/does-not-exist", { headers: { "x-request-id": unsafe } });
      const id = response.headers.get("x-request-id") ?? "";
      assert.notEqual(id, unsafe);
      assert.match(id, SAFE_REQUEST_ID, `replacement for ${JSON.stringify(unsafe)}`);
      assert.equal((await assertErrorEnvelope(response, 404, `X-Request-Id ${unsafe}`)).correlationId, id);
    }
  });
});
