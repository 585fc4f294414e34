/** Unit tests of functions/api/audit/** (one describe per route file). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import listAudit from "../../../../functions/api/audit/index.get.ts";
import { runRoute } from "../../../../lib/http/app.ts";
import { asAdmin, expectAdminOnly, expectError, unitApp } from "../../harness.ts";

describe("functions/api/audit/index.get.ts", () => {
  it("answers pages of events, newest first, and next_cursor null on the last one", async () => {
    const app = unitApp();
    for (let i = 1; i <= 3; i++) await app.audit.record(app.database.db, { actor: "alice", kind: "device.updated", deviceId: i, modelId: 9, details: { key: `k${i}` } });
    const run = (path: string) => runRoute(listAudit, asAdmin("GET", path), { ...app.edge, audit: app.services.audit });
    const first = await run("/api/audit?limit=2&model_id=9");
    assert.equal(first.status, 200);
    const page = await first.json();
    assert.deepEqual(
      page.events.map(({ id: _id, at: _at, ...rest }: Record<string, unknown>) => rest),
      [3, 2].map((i) => ({ actor: "alice", kind: "device.updated", device_id: i, model_id: 9, details: { key: `k${i}` } })),
    );
    assert.equal(typeof page.next_cursor, "string");
    const last = await (await run(`/api/audit?limit=2&model_id=9&cursor=${page.next_cursor}`)).json();
    assert.deepEqual([last.events.map((event: { device_id: number }) => event.device_id), last.next_cursor], [[1], null]);
    assert.deepEqual(await (await run("/api/audit?device_id=4")).json(), { events: [], next_cursor: null });
  });

  it("refuses a bad filter, limit or cursor with 400 VALIDATION_FAILED naming the parameter", async () => {
    const app = unitApp();
    const cases: [string, string][] = [
      ["device_id=abc", "device_id"],
      ["model_id=0", "model_id"],
      ["since=yesterday", "since"],
      ["since=2026-03-07", "since"],
      ["limit=0", "limit"],
      ["limit=1001", "limit"],
      ["limit=-1", "limit"],
      ["cursor=not*a*cursor", "cursor"],
      [`cursor=${Buffer.from("12.x").toString("base64url")}`, "cursor"],
      ["colour=red", "colour"],
    ];
    for (const [search, field] of cases) {
      const envelope = await expectError(await app.run(listAudit, asAdmin("GET", `/api/audit?${search}`)), 400, "VALIDATION_FAILED");
      assert.deepEqual((envelope.details as { errors: { field: string }[] }).errors.map((error) => error.field), [field], search);
    }
  });

  it("is for admins only", () => expectAdminOnly(listAudit, "GET", "/api/audit"));
});
