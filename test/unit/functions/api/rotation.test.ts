/** Unit tests of functions/api/rotation/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import dashboard from "../../../../functions/api/rotation/dashboard.get.ts";
import status from "../../../../functions/api/rotation/status.get.ts";
import trigger from "../../../../functions/api/rotation/trigger.post.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { asAdmin, expectAdminOnly, unitApp } from "../../harness.ts";

describe("functions/api/rotation/trigger.post.ts", () => {
  it("queues every OK device and starts one at once", async () => {
    const app = unitApp();
    await app.device();
    await app.device();
    const response = await app.run(trigger, asAdmin("POST", "/api/rotation/trigger"));
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { queued_count: 2 });
    assert.deepEqual((await app.services.rotation.status()).counts_by_state, { OK: 0, QUEUED: 1, PENDING: 1, TIMEOUT: 0 });
    assert.deepEqual(app.notifier.delivered.map((notice) => notice.kind), ["rotation"]);
  });

  it("queues nothing when no device is OK", async () => {
    assert.deepEqual(await (await unitApp().run(trigger, asAdmin("POST", "/api/rotation/trigger"))).json(), { queued_count: 0 });
  });

  it("is for admins only", () => expectAdminOnly(trigger, "POST", "/api/rotation/trigger"));
});

describe("functions/api/rotation/status.get.ts", () => {
  it("counts devices per state, names the pending one and the next scheduled rotation", async () => {
    const app = unitApp();
    const { device } = await app.device();
    await app.device();
    await app.services.rotation.rotateDevice(device.id, "test-admin");
    const response = await runRoute(status, asAdmin("GET", "/api/rotation/status"), { ...app.edge, rotation: app.services.rotation });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual(body.counts_by_state, { OK: 1, QUEUED: 0, PENDING: 1, TIMEOUT: 0 });
    assert.equal(body.pending_device_id, device.id);
    assert.equal(body.last_rotation_completed_at, null);
    assert.ok(Date.parse(body.next_scheduled_rotation) > Date.now());
  });

  it("is for admins only", () => expectAdminOnly(status, "GET", "/api/rotation/status"));
});

describe("functions/api/rotation/dashboard.get.ts", () => {
  it("groups devices by rotation health", async () => {
    const app = unitApp();
    const { device: timedOut } = await app.device();
    await app.device();
    app.world.devices.get(timedOut.id)!.rotationState = "TIMEOUT";
    const response = await app.run(dashboard, asAdmin("GET", "/api/rotation/dashboard"));
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.deepEqual(body.counts, { healthy: 1, warning: 0, critical: 1, unconfirmed: 0 });
    assert.equal(body.critical[0].id, timedOut.id);
  });

  it("answers one group a page at a time with the counts of all groups, given group (and limit, cursor)", async () => {
    const app = unitApp();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await app.device()).device.id);
    app.world.devices.get(ids[0]!)!.rotationState = "TIMEOUT";
    const first = await app.run(dashboard, asAdmin("GET", "/api/rotation/dashboard?group=healthy&limit=1"));
    assert.equal(first.status, 200);
    const page = await first.json();
    assert.equal(page.group, "healthy");
    assert.equal(page.devices.length, 1);
    assert.deepEqual(page.counts, { healthy: 2, warning: 0, critical: 1, unconfirmed: 0 });
    const second = await (await app.run(dashboard, asAdmin("GET", `/api/rotation/dashboard?group=healthy&limit=1&cursor=${page.next_cursor}`))).json();
    assert.equal(second.devices.length, 1);
    assert.equal(second.next_cursor, null);
    assert.notEqual(second.devices[0].id, page.devices[0].id);
    const other = await app.run(dashboard, asAdmin("GET", `/api/rotation/dashboard?group=critical&cursor=${page.next_cursor}`));
    assert.equal(other.status, 400);
    assert.equal((await other.json()).details.errors[0].field, "cursor");
    const noGroup = await app.run(dashboard, asAdmin("GET", "/api/rotation/dashboard?limit=5"));
    assert.equal(noGroup.status, 400);
    assert.equal((await noGroup.json()).details.errors[0].field, "group");
  });

  it("is for admins only", () => expectAdminOnly(dashboard, "GET", "/api/rotation/dashboard"));
});
