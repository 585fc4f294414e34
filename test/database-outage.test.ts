/**
 * The database goes away under a running server (CONTRACT §1, §8): requests answer 503 in the envelope with
 * Retry-After within a few seconds, /api/health says unhealthy within 2 s, one warning is logged rather than an
 * error per request, and everything works again once the database is back. The shared PostgreSQL is never stopped:
 * a proxy in front of it refuses or freezes connections (test/support/database-proxy.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createLogger } from "../lib/logger.ts";
import { createTestDatabase } from "./support/database.ts";
import { type DatabaseProxy, startDatabaseProxy } from "./support/database-proxy.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

/** The product aims at about 3 s (the default timeouts); the bound leaves room for a busy machine. */
const FIRST_503_WITHIN_MS = 8000;
const HEALTH_WITHIN_MS = 2500;

const OUTAGES = [
  { name: "refused (a stopped server)", begin: (proxy: DatabaseProxy) => proxy.refuse() },
  { name: "frozen (a SIGSTOPped server: connections open, nothing answered)", begin: async (proxy: DatabaseProxy) => proxy.freeze() },
];

for (const outage of OUTAGES) describe(`database ${outage.name}`, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let proxy: DatabaseProxy;
  let server: TestServer;
  const logLines: { level: string; message: string }[] = [];

  const timed = async (method: string, path: string, body?: unknown) => {
    const started = performance.now();
    const response = await server.admin(method, path, body);
    return { response, ms: performance.now() - started };
  };

  before(async () => {
    database = await createTestDatabase();
    proxy = await startDatabaseProxy(database.url);
    const logger = createLogger("info", {}, (line) => logLines.push(JSON.parse(line)));
    server = await startTestServer({ databaseUrl: proxy.url, env: { MQTT_URL: "" }, overrides: { logger } });
    // Pooled connections are open and in use before the outage, as on a live server.
    const models = await Promise.all([1, 2, 3].map((n) => server.admin("POST", "/api/device-models", { code: `outage_${n}`, name: `Outage ${n}` })));
    for (const created of models) assert.equal(created.status, 201);
  });
  after(async () => {
    await proxy.heal();
    await server.close();
    await proxy.close();
    await database.drop();
  });

  test("requests answer 503 with Retry-After within seconds, health says unhealthy, then all works again", async () => {
    await outage.begin(proxy);

    const first = await timed("GET", "/api/device-models");
    const envelope = await assertErrorEnvelope(first.response, 503, "GET /api/device-models during the outage");
    assert.equal(envelope.code, "UPSTREAM_UNAVAILABLE");
    assert.deepEqual(envelope.details, { service: "database" });
    assert.match(first.response.headers.get("retry-after") ?? "", /^[1-9]\d*$/, "Retry-After in seconds");
    assert.ok(first.ms < FIRST_503_WITHIN_MS, `first 503 after ${Math.round(first.ms)} ms`);

    const health = await timed("GET", "/api/health");
    assert.equal(health.response.status, 503);
    assert.equal((await health.response.json()).database, "disconnected");
    assert.ok(health.ms < HEALTH_WITHIN_MS, `health answered after ${Math.round(health.ms)} ms`);

    // A burst, reads and writes: every one answered in time, none hanging behind another.
    const burst = await Promise.all([
      ...Array.from({ length: 12 }, () => timed("GET", "/api/device-models")),
      ...Array.from({ length: 4 }, (_, n) => timed("POST", "/api/device-models", { code: `lost_${n}`, name: "Never stored" })),
      // The whole dashboard reads its chunks through a path of its own (raw bytes, lib/rotation/dashboard.ts).
      ...Array.from({ length: 2 }, () => timed("GET", "/api/rotation/dashboard")),
    ]);
    for (const { response, ms } of burst) {
      await assertErrorEnvelope(response, 503, "a request of the burst");
      assert.ok(ms < FIRST_503_WITHIN_MS, `a request of the burst answered after ${Math.round(ms)} ms`);
    }

    await proxy.heal();
    await waitFor("a request to succeed after the outage", async () => (await server.admin("GET", "/api/device-models")).status === 200, 10_000, 100);
    assert.equal((await server.admin("GET", "/api/health")).status, 200);
    const created = await server.admin("POST", "/api/device-models", { code: "after_outage", name: "Stored after the outage" });
    assert.equal(created.status, 201);
    const { device_models: models } = await (await server.admin("GET", "/api/device-models")).json();
    const codes = models.map((model: { code: string }) => model.code);
    assert.deepEqual(codes.sort(), ["after_outage", "outage_1", "outage_2", "outage_3"]);
  });

  test("the outage is logged once, as a warning, not as an error per request", () => {
    const failures = logLines.filter((line) => line.level !== "info");
    assert.deepEqual(
      failures.map((line) => `${line.level}: ${line.message}`),
      ["warn: The database is unavailable; what needs it answers 503 until it is back"],
    );
  });
});
