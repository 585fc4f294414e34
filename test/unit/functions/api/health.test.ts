/** Unit tests of functions/api/health/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import readiness from "../../../../functions/api/health/index.get.ts";
import liveness from "../../../../functions/api/health/live.get.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { request, unitApp } from "../../harness.ts";

describe("functions/api/health/index.get.ts", () => {
  it("200 healthy while the database answers, with the broker's state, uncached", async () => {
    const { edge, services } = unitApp();
    const { database, notifier, embeddedBroker } = services;
    const response = await runRoute(readiness, request("GET", "/api/health"), { ...edge, database, notifier, embeddedBroker });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("cache-control"), "no-store");
    assert.deepEqual(await response.json(), { status: "healthy", database: "connected", mqtt: "connected" });
  });

  it("a broker outage is reported but does not make the server unready", async () => {
    const app = unitApp();
    app.notifier.broker.up = false;
    const response = await app.run(readiness, request("GET", "/api/health"));
    assert.equal(response.status, 200);
    assert.equal((await response.json()).mqtt, "disconnected");
  });

  it("503 unhealthy while the database does not answer, and the outage is logged", async () => {
    const app = unitApp();
    app.database.server.up = false;
    const response = await app.run(readiness, request("GET", "/api/health"));
    assert.equal(response.status, 503);
    assert.deepEqual(await response.json(), { status: "unhealthy", database: "disconnected", mqtt: "connected", error: "The database is not answering." });
    assert.ok(app.logger.lines.some((line) => line.level === "warn" && /database is unavailable/.test(line.message)));
  });
});

describe("functions/api/health/live.get.ts", () => {
  it("200 alive, also while the database is down", async () => {
    const app = unitApp();
    app.database.server.up = false;
    // uses: [] — the edge's services are all it is given.
    const response = await runRoute(liveness, request("GET", "/api/health/live"), app.edge);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: "alive" });
  });
});
