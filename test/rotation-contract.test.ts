/** The real rotation service (PostgreSQL, built-in provider) against the contract its fake also passes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inArray, sql } from "drizzle-orm";
import { deviceModels, devices } from "../db/schema.ts";
import { allPages } from "../lib/paging.ts";
import { enqueue } from "../lib/rotation/queue.ts";
import { dashboardGroups } from "../lib/rotation/dashboard.ts";
import { createTestApp } from "./support/app.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { dashboardOracle } from "./support/dashboard-oracle.ts";
import { describeRotationContract } from "./support/rotation-contract.ts";

describeRotationContract("postgres", async () => {
  // The fake notifier (held to MQTT by its own contract) shows what the service publishes.
  const notifier = fakeNotifier();
  const app = await createTestApp({ overrides: { notifier } });
  return { services: app.services, notices: () => notifier.delivered, close: () => app.close() };
});

const DAY_MS = 86_400_000;

describe("the dashboard rows PostgreSQL writes as JSON", () => {
  it("are byte for byte JSON.stringify of the dashboard's rows (test/support/dashboard-oracle.ts), in every group and on every page", async () => {
    const app = await createTestApp({ overrides: { notifier: fakeNotifier() } });
    try {
      const { db } = app.services.database;
      const [model] = await db.insert(deviceModels).values({ code: "dash_json", name: "Dashboard JSON" }).returning();
      const names = [null, "Kitchen", 'quote " and \\ backslash', "lines\nand\ttabs\r\u0001\u001f\b\f", "ünïcödé ✓ 😀", "</script>", ""];
      const now = Date.now();
      const completedAgo = [null, 0, 1, 3_600_000, 6 * DAY_MS + 0.5, 7 * DAY_MS - 1, 7 * DAY_MS, 7 * DAY_MS + 1, 400 * DAY_MS + 123.456, -DAY_MS];
      const rows = Array.from({ length: 40 }, (_, i) => {
        const key = `dj${String(i).padStart(6, "0")}`;
        const ago = completedAgo[i % completedAgo.length];
        return {
          key,
          deviceModelId: model!.id,
          clientId: `dash_json_${key}`,
          config: "{}",
          deviceName: names[i % names.length],
          rotationState: (["OK", "TIMEOUT", "OK", "TIMEOUT"] as const)[i % 4],
          rotationUnconfirmed: i % 3 === 0,
          lastRotationCompletedAt: ago === null || ago === undefined ? null : new Date(now - ago),
        };
      });
      await db.insert(devices).values(rows);
      // Queued: every fourth OK device, and a TIMEOUT device queued for its retry (shown QUEUED, healthy).
      await enqueue(db, inArray(devices.key, rows.filter((_, i) => i % 4 === 2 || i % 8 === 3).map((row) => row.key)));
      // Microseconds as PostgreSQL keeps them (JavaScript's Date has none): cut, not rounded, on both sides.
      await db.execute(sql`update devices set last_rotation_completed_at = last_rotation_completed_at + interval '987 microseconds' where last_rotation_completed_at is not null`);
      const at = new Date(now + 0.7 * DAY_MS);
      const expected = await dashboardOracle(db, at);
      for (const group of dashboardGroups) {
        for (const limit of [3, 2000]) {
          const read = expected[group].map((row) => JSON.stringify(row));
          const written = [];
          for await (const batch of allPages((after) => app.services.rotation.dashboardJsonPage(group, { after, limit, now: at }))) written.push(...batch);
          assert.ok(read.length > 0, `${group} has rows`);
          assert.deepEqual(written, read, `${group}, pages of ${limit}`);
        }
      }
      // The counts, read on the indexes without the groups, split warning and critical where the groups do (to the
      // microsecond around 7 days).
      for (const instant of [at, new Date(now), new Date(now + 1), new Date(now - 1)]) {
        const groups = await dashboardOracle(db, instant);
        const walked = Object.fromEntries(dashboardGroups.map((group) => [group, groups[group].length]));
        const counts = await app.services.rotation.dashboardCounts(instant);
        assert.deepEqual(counts, { ...walked, unconfirmed: rows.filter((row) => row.rotationUnconfirmed).length }, `at ${instant.toISOString()}`);
        assert.ok(counts.warning > 0 && counts.critical > 0);
      }
    } finally {
      await app.close();
    }
  });
});
