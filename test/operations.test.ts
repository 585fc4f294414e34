/** Operators' endpoints (CONTRACT §8): health, liveness, Prometheus metrics and the API docs. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq, inArray } from "drizzle-orm";
import postgres from "postgres";
import { z } from "zod";
import { devices } from "../db/schema.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { TEST_POSTGRES_URL } from "./support/database.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { enqueue } from "../lib/rotation/queue.ts";

const MQTT_URL = "mqtt://127.0.0.1:1883";
const DEAD_BROKER = "mqtt://127.0.0.1:1";

async function health(app: TestApp) {
  const response = await app.call("GET", "/api/health", { token: null });
  return { status: response.status, body: await response.json(), cacheControl: response.headers.get("cache-control") };
}

async function waitForMqtt(app: TestApp, state: "connected" | "disconnected", timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await health(app);
    if (body.mqtt === state) return body;
    if (Date.now() > deadline) assert.fail(`mqtt stayed ${body.mqtt}, expected ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function metricsText(app: TestApp) {
  const response = await app.call("GET", "/metrics", { token: null });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  return response.text();
}

/** The value of one sample line, e.g. sample(text, 'iot_devices{rotation_state="OK"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("health", () => {
  test("no MQTT_URL: healthy, database connected, mqtt disabled; liveness 200", async () => {
    const app = await createTestApp();
    try {
      const { status, body, cacheControl } = await health(app);
      assert.equal(status, 200);
      assert.deepEqual(body, { status: "healthy", database: "connected", mqtt: "disabled" });
      assert.equal(cacheControl, "no-store");
      const live = await app.call("GET", "/api/health/live", { token: null });
      assert.equal(live.status, 200);
    } finally {
      await app.close();
    }
  });

  test("with the real broker: mqtt connected", async () => {
    const app = await createTestApp({ env: { MQTT_URL } });
    try {
      const body = await waitForMqtt(app, "connected");
      assert.deepEqual(body, { status: "healthy", database: "connected", mqtt: "connected" });
      assert.equal(sample(await metricsText(app), "iot_mqtt_connection_state"), 1);
    } finally {
      await app.close();
    }
  });

  test("with a dead broker: mqtt disconnected, still healthy, and the API works", async () => {
    const app = await createTestApp({ env: { MQTT_URL: DEAD_BROKER } });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { status, body } = await health(app);
      assert.equal(status, 200);
      assert.deepEqual(body, { status: "healthy", database: "connected", mqtt: "disconnected" });
      const created = await app.call("POST", "/api/device-models", { body: { code: "offline_ok", name: "Works without broker" } });
      assert.equal(created.status, 201);
      const device = await app.call("POST", "/api/devices", { body: { device_model_id: (await created.json()).id, config: "{}" } });
      assert.equal(device.status, 201);
      assert.equal(sample(await metricsText(app), "iot_mqtt_connection_state"), 0);
    } finally {
      await app.close();
    }
  });

  test("the database is gone: 503 unhealthy with an error, liveness still 200", async () => {
    const app = await createTestApp();
    const name = new URL(app.services.config.DATABASE_URL!).pathname.slice(1);
    const admin = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
    try {
      assert.equal((await health(app)).status, 200);
      await admin.unsafe(`drop database ${name} with (force)`);
      const started = performance.now();
      const { status, body, cacheControl } = await health(app);
      const elapsed = performance.now() - started;
      assert.equal(status, 503);
      assert.equal(body.status, "unhealthy");
      assert.equal(body.database, "disconnected");
      assert.equal(body.mqtt, "disabled");
      assert.equal(typeof body.error, "string");
      assert.ok(body.error.length > 5);
      assert.ok(!JSON.stringify(body).includes(name), "the database name does not leak");
      assert.doesNotMatch(JSON.stringify(body), /does not exist|postgres|select/i);
      assert.equal(cacheControl, "no-store");
      assert.ok(elapsed < 5000, `answered in ${Math.round(elapsed)} ms`);
      const live = await app.call("GET", "/api/health/live", { token: null });
      assert.equal(live.status, 200);
      // A request that needs the database: an unreachable upstream (503) in the envelope, without internal text.
      const list = await app.call("GET", "/api/device-models");
      const envelope = await assertErrorEnvelope(list, 503, "GET /api/device-models without a database");
      assert.equal(envelope.code, "UPSTREAM_UNAVAILABLE");
      assert.match(list.headers.get("retry-after") ?? "", /^[1-9]\d*$/, "Retry-After in seconds");
    } finally {
      await admin.end();
      await app.close();
    }
  });
});

describe("metrics", () => {
  let app: TestApp;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());

  test("Prometheus text with every metric of CONTRACT §8 and fleet gauges per rotation state", async () => {
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "metered", name: "Metered" } })).json();
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: `{"deviceName": "d${i}"}` } });
      assert.equal(response.status, 201);
      ids.push((await response.json()).id);
    }
    const db = app.services.database.db;
    await enqueue(db, inArray(devices.id, [ids[0]!, ids[1]!]));
    await db.update(devices).set({ rotationState: "PENDING", rotationStartedAt: new Date() }).where(eq(devices.id, ids[2]!));
    await db.update(devices).set({ rotationState: "TIMEOUT", rotationUnconfirmed: true }).where(eq(devices.id, ids[3]!));

    const text = await metricsText(app);
    for (const name of [
      "iot_config_operations_total",
      "iot_config_operation_duration_seconds",
      "iot_auth_validation_total",
      "iot_mqtt_publish_total",
      "iot_mqtt_connection_state",
      "iot_rotation_job_runs_total",
      "iot_keycloak_operations_total",
      "iot_devices",
      "iot_rotation_unconfirmed_devices",
      "iot_firmware_cache_bytes",
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, "m"), name);
    }
    assert.match(text, /^process_cpu_user_seconds_total /m, "process defaults");
    assert.match(text, /^nodejs_heap_size_used_bytes /m, "process defaults");
    assert.deepEqual(
      Object.fromEntries(["OK", "QUEUED", "PENDING", "TIMEOUT"].map((state) => [state, sample(text, `iot_devices{rotation_state="${state}"}`)])),
      { OK: 1, QUEUED: 2, PENDING: 1, TIMEOUT: 1 },
    );
    assert.equal(sample(text, "iot_rotation_unconfirmed_devices"), 1);
  });

  test("model and device operations are counted and timed, failures as errors", async () => {
    const before = await metricsText(app);
    const count = (text: string, operation: string, status: string) =>
      sample(text, `iot_config_operations_total{operation="${operation}",status="${status}"}`) ?? 0;
    const model = await (await app.call("POST", "/api/device-models", { body: { code: "counted", name: "Counted" } })).json();
    assert.equal((await app.call("POST", "/api/device-models", { body: { code: "counted", name: "Duplicate" } })).status, 409);
    assert.equal((await app.call("PUT", `/api/device-models/${model.id}`, { body: { name: "Renamed" } })).status, 200);
    const device = await (await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{}" } })).json();
    assert.equal((await app.call("POST", "/api/devices", { body: { device_model_id: model.id, config: "{not json" } })).status, 400);
    assert.equal((await app.call("PUT", `/api/devices/${device.id}`, { body: { config: '{"a": 1}' } })).status, 200);
    assert.equal((await app.call("DELETE", `/api/devices/${device.id}`)).status, 204);
    assert.equal((await app.call("DELETE", `/api/device-models/${model.id}`)).status, 204);
    const after = await metricsText(app);

    const expected: [string, string, number][] = [
      ["create_model", "success", 1],
      ["create_model", "error", 1],
      ["update_model", "success", 1],
      ["delete_model", "success", 1],
      ["create_device", "success", 1],
      ["create_device", "error", 1],
      ["update_device", "success", 1],
      ["delete_device", "success", 1],
    ];
    for (const [operation, status, n] of expected) {
      assert.equal(count(after, operation, status) - count(before, operation, status), n, `${operation} ${status}`);
    }
    const timed = (text: string) => sample(text, 'iot_config_operation_duration_seconds_count{operation="create_device"}') ?? 0;
    assert.equal(timed(after) - timed(before), 2);
  });

  test("route labels are patterns, never raw paths", async () => {
    assert.equal((await app.call("GET", "/api/devices/17")).status, 404);
    assert.equal((await app.call("GET", "/api/device-models/123456")).status, 404);
    assert.equal((await app.call("GET", "/api/devices/abc")).status, 404);
    assert.equal((await app.call("GET", "/api/no/such/route/42")).status, 404);
    const text = await metricsText(app);
    assert.match(text, /route="\/api\/devices\/:id"/);
    assert.match(text, /route="\/api\/device-models\/:id"/);
    const routeLabels = [...text.matchAll(/route="([^"]*)"/g)].map((match) => match[1]!);
    assert.ok(routeLabels.length > 0);
    for (const label of routeLabels) {
      assert.doesNotMatch(label, /\/\d+(\/|$)|abc|no\/such/, `raw path in a route label: ${label}`);
    }
    const known = new Set([...app.routes.map((route) => route.path), "unmatched"]);
    for (const label of routeLabels) assert.ok(known.has(label), `route label ${label} is a route pattern`);
  });
});

describe("API docs", () => {
  let app: TestApp;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());

  test("the page references only local assets, which load with the right content type", async () => {
    const page = await app.call("GET", "/api/docs", { token: null });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const html = await page.text();
    assert.doesNotMatch(html, /https?:\/\//, "no URL of another host");
    assert.doesNotMatch(html, /src="\/\/|href="\/\//, "no protocol-relative URL");
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
    assert.ok(urls.some((url) => url.endsWith(".css")) && urls.some((url) => url.endsWith(".js")), urls.join(", "));
    for (const url of urls) {
      assert.match(url, /^\/api\/docs\/assets\/[\w.-]+$/, url);
      const asset = await app.call("GET", url, { token: null });
      assert.equal(asset.status, 200, url);
      const type = asset.headers.get("content-type") ?? "";
      assert.match(type, url.endsWith(".css") ? /^text\/css/ : /^(text|application)\/javascript/, `${url}: ${type}`);
      const content = await asset.text();
      assert.ok(content.length > 0, url);
      if (url.endsWith("docs-init.js")) {
        assert.match(content, /\/api\/docs\/openapi\.json/);
        assert.doesNotMatch(content, /https?:\/\//);
      }
    }
    assert.equal((await app.call("GET", "/api/docs/assets/..%2Fpackage.json", { token: null })).status, 404);
    assert.equal((await app.call("GET", "/api/docs/assets/index.html", { token: null })).status, 404);
  });

  test("openapi.json is OpenAPI 3.1 covering every route, with bodies from the zod schemas", async () => {
    const response = await app.call("GET", "/api/docs/openapi.json", { token: null });
    assert.equal(response.status, 200);
    type Doc = {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, any>>;
      components?: { schemas?: Record<string, any>; securitySchemes?: Record<string, any> };
    };
    const doc = (await response.json()) as Doc;
    assert.match(doc.openapi, /^3\.1\.\d+$/);
    assert.equal(typeof doc.info.title, "string");
    assert.equal(typeof doc.info.version, "string");
    assert.equal(typeof doc.paths, "object");

    const resolve = (node: any): any => {
      if (!node?.$ref) return node;
      const match = /^#\/components\/(\w+)\/(.+)$/.exec(node.$ref);
      assert.ok(match, `local $ref: ${node.$ref}`);
      const target = (doc.components as any)?.[match[1]!]?.[match[2]!];
      assert.ok(target, `$ref resolves: ${node.$ref}`);
      return resolve(target);
    };
    // Every $ref anywhere in the document resolves.
    const walk = (node: unknown) => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === "object") {
        if (typeof (node as any).$ref === "string") resolve(node);
        Object.values(node).forEach(walk);
      }
    };
    walk(doc);

    const operationIds = new Set<string>();
    let operations = 0;
    for (const item of Object.values(doc.paths)) {
      for (const method of Object.keys(item)) if (["get", "put", "post", "delete", "patch", "head", "options"].includes(method)) operations++;
    }
    assert.equal(operations, app.routes.length, "one operation per route, none extra");

    for (const route of app.routes) {
      const path = route.path.replace(/:(\w+)/g, "{$1}");
      const operation = doc.paths[path]?.[route.method.toLowerCase()];
      assert.ok(operation, `${route.method} ${path} is documented`);
      assert.ok(operation.responses && Object.keys(operation.responses).length > 0, `${route.method} ${path} has responses`);
      for (const [code, value] of Object.entries(operation.responses)) {
        assert.match(code, /^([1-5]\d\d|default)$/, `${path} response key ${code}`);
        assert.equal(typeof resolve(value).description, "string", `${path} ${code} has a description`);
      }
      if (operation.operationId) {
        assert.ok(!operationIds.has(operation.operationId), `duplicate operationId ${operation.operationId}`);
        operationIds.add(operation.operationId);
      }
      const parameters = [...(doc.paths[path]!.parameters ?? []), ...(operation.parameters ?? [])].map(resolve);
      for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
        const parameter = parameters.find((p: any) => p.in === "path" && p.name === name);
        assert.ok(parameter, `${route.method} ${path} declares the path parameter ${name}`);
        assert.equal(parameter.required, true);
      }
      const body = route.request?.body;
      if (body) {
        const schema = resolve(operation.requestBody?.content?.["application/json"]?.schema);
        assert.ok(schema, `${route.method} ${path} documents its JSON body`);
        const fromZod = z.toJSONSchema(body, { io: "input" }) as any;
        const expected = fromZod.$ref ? fromZod.$defs[fromZod.$ref.split("/").pop()] : fromZod;
        assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(expected.properties).sort(), `${path} body properties`);
        assert.deepEqual([...(schema.required ?? [])].sort(), [...(expected.required ?? [])].sort(), `${path} required fields`);
      }
    }

    // Every route that can answer 409 documents it, with the error envelope.
    for (const [method, path] of [
      ["post", "/api/device-models"],
      ["delete", "/api/device-models/{id}"],
      ["post", "/api/device-models/{id}/firmware"],
      ["delete", "/api/device-models/{id}/firmware/versions/{vid}"],
    ] as const) {
      const conflict = resolve(doc.paths[path]?.[method]?.responses?.["409"]);
      assert.ok(conflict, `${method.toUpperCase()} ${path} documents 409`);
      const schema = resolve(conflict.content?.["application/json"]?.schema);
      assert.ok(schema?.properties?.code && schema?.properties?.error, `${method.toUpperCase()} ${path}: 409 is the error envelope`);
    }

    const createDevice = doc.components!.schemas!.CreateDevice;
    assert.ok(createDevice, "CreateDevice is a named component");
    assert.deepEqual([...createDevice.required].sort(), ["config", "device_model_id"]);
    assert.equal(createDevice.properties.config.type, "string");
    assert.equal(createDevice.properties.device_model_id.type, "integer");
    assert.equal(createDevice.additionalProperties, false, "unknown fields are documented as rejected");
    const createModel = doc.components!.schemas!.CreateModel;
    assert.deepEqual([...createModel.required].sort(), ["code", "name"]);
    assert.equal(createModel.properties.code.pattern, "^[a-z0-9_]+$");

    // Bodies the handlers read themselves are documented as what they accept, not as opaque bytes.
    const upload = doc.paths["/api/device-models/{id}/firmware"]!.post.requestBody.content;
    assert.deepEqual(Object.keys(upload).sort(), ["application/octet-stream", "multipart/form-data"]);
    assert.deepEqual(upload["application/octet-stream"].schema, { type: "string", format: "binary" });
    assert.deepEqual(upload["multipart/form-data"].schema.required, ["file"]);
    assert.equal(upload["multipart/form-data"].schema.properties.file.format, "binary");
    const tokenForm = doc.paths["/oauth2/token"]!.post.requestBody.content["application/x-www-form-urlencoded"].schema;
    assert.deepEqual(Object.keys(tokenForm.properties).sort(), ["client_id", "client_secret", "grant_type"]);
    assert.deepEqual(tokenForm.required, ["grant_type"]);
  });
});
