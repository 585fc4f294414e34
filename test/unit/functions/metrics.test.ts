/** Unit tests of functions/metrics.get.ts. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import getDevice from "../../../functions/api/devices/[id]/index.get.ts";
import metrics from "../../../functions/metrics.get.ts";
import { runRoute } from "../../../lib/http/app.ts";
import { asAdmin, request, unitApp } from "../harness.ts";

describe("functions/metrics.get.ts", () => {
  it("serves the Prometheus text with request counts labelled by route pattern, not by raw path", async () => {
    const app = unitApp();
    await runRoute(getDevice, asAdmin("GET", "/api/devices/12345"), { ...app.edge, devices: app.services.devices });
    const response = await runRoute(metrics, request("GET", "/metrics"), { ...app.edge, metrics: app.services.metrics });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await response.text();
    assert.match(text, /route="\/api\/devices\/:id"/);
    assert.doesNotMatch(text, /12345/);
  });
});
