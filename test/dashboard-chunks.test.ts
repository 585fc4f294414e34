/**
 * The whole rotation dashboard kept ready in dashboard_chunks (lib/rotation/dashboard.ts, migration 0012): whatever
 * was rendered and whenever, the dashboard answers the devices as they are at the time it is read, byte for byte the
 * plain model's (test/support/dashboard-oracle.ts). Real PostgreSQL (and PGlite for the embedded default).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { eq, inArray, sql } from "drizzle-orm";
import postgres from "postgres";
import type { Database } from "../db/client.ts";
import { dashboardChunks, dashboardDirty, deviceModels, devices } from "../db/schema.ts";
import { loadConfig } from "../lib/config.ts";
import { createServices, type Services } from "../lib/context.ts";
import { createDashboard, DASHBOARD_RENDER_LOCK_ID, dashboardGroups } from "../lib/rotation/dashboard.ts";
import { dequeue, enqueue } from "../lib/rotation/queue.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { dashboardOracle, wholeGroup } from "./support/dashboard-oracle.ts";
import { fakeNotifier } from "./support/fakes/notifier.ts";
import { startTestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

const DAY_MS = 86_400_000;
const PREFIXES = ["00", "a0", "a1", "m5", "zz"];

/** Devices over five prefixes in every group: TIMEOUT around the 7-day threshold, never completed, queued, unconfirmed. */
async function seed(db: Database, now: number) {
  const models = await db
    .insert(deviceModels)
    .values([
      { code: "chunk_a", name: "Chunk A" },
      { code: "chunk_b", name: "Chunk B" },
    ])
    .returning();
  const completedAgo = [null, 0.5 * DAY_MS, 3.5 * DAY_MS, 6.5 * DAY_MS, 7.5 * DAY_MS, 40.5 * DAY_MS];
  const rows = PREFIXES.flatMap((prefix, p) =>
    Array.from({ length: 8 }, (_, i) => {
      const ago = completedAgo[(i + p) % completedAgo.length]!;
      return {
        key: `${prefix}${String(i).padStart(6, "0")}`,
        deviceModelId: models[(i + p) % 2]!.id,
        clientId: `chunk_${prefix}_${i}`,
        config: "{}",
        deviceName: i % 3 === 0 ? null : `Room "${prefix}" ${i}`,
        rotationState: i % 2 === 1 ? ("TIMEOUT" as const) : ("OK" as const),
        rotationUnconfirmed: i % 4 === 1,
        lastRotationCompletedAt: ago === null ? null : new Date(now - ago),
      };
    }),
  );
  await db.insert(devices).values(rows);
  await enqueue(db, inArray(devices.key, ["a0000002", "zz000004"]));
  return { models, keys: rows.map((row) => row.key) };
}

type Rotation = Pick<Services["rotation"], "dashboardJsonChunks">;

/** Every group of the whole dashboard at `at` as its chunks make it, against the plain model at `at`. */
async function assertDashboard(rotation: Rotation, db: Database, at: Date, thresholdDays = 7) {
  const expected = await dashboardOracle(db, at, thresholdDays);
  for (const group of dashboardGroups) {
    const { joined, rows } = await wholeGroup(rotation, group, at);
    assert.equal(`[${joined}]`, JSON.stringify(expected[group]), `${group} at ${at.toISOString()}`);
    assert.equal(rows, expected[group].length, `${group}'s count`);
  }
  return expected;
}

type Seeded = { app: TestApp; db: Database; now: number; at: Date; models: Awaited<ReturnType<typeof seed>>["models"] };

/** A test app with the seeded devices; `at` is a minute on, when every chunk is rendered (unless `rendered` is false). */
async function withSeededApp(test: (seeded: Seeded) => Promise<void>, { rendered = true } = {}) {
  const app = await createTestApp({ overrides: { notifier: fakeNotifier() } });
  try {
    const db = app.services.database.db;
    const now = Date.now();
    const { models } = await seed(db, now);
    const at = new Date(now + 60_000);
    if (rendered) await app.services.rotation.refreshDashboard(at);
    await test({ app, db, now, at, models });
  } finally {
    await app.close();
  }
}

const dirtyPrefixes = async (db: Database) => [...new Set((await db.select().from(dashboardDirty)).map((row) => row.prefix))].sort();

describe("the whole dashboard kept ready in dashboard_chunks", () => {
  it("answers the devices as they are before anything is rendered, once rendered, and after each kind of change, rendering only the chunks a change touched", async () => {
    await withSeededApp(async ({ app, db, now, at, models }) => {
      const { refreshDashboard } = app.services.rotation;
      await assertDashboard(app.services.rotation, db, at);
      assert.equal(await refreshDashboard(at), 1296, "every prefix a key can have is rendered once");
      const [stored] = await db.select().from(dashboardChunks).where(eq(dashboardChunks.prefix, "a1"));
      assert.ok(stored!.healthyCount + stored!.warningCount + stored!.criticalCount === 8 && stored!.healthy.length > 0, "a1's rows are stored");
      await assertDashboard(app.services.rotation, db, at);
      assert.equal(await refreshDashboard(at), 0, "nothing changed: nothing is rendered again");

      const changes: [string, () => Promise<unknown>, string[]][] = [
        ["a rename", () => db.update(devices).set({ deviceName: "Renamed ✓" }).where(eq(devices.key, "a1000002")), ["a1"]],
        ["a model's new code", () => db.update(deviceModels).set({ code: "chunk_b2" }).where(eq(deviceModels.id, models[1]!.id)), PREFIXES],
        ["queued", () => enqueue(db, eq(devices.key, "m5000000")), ["m5"]],
        ["out of the queue", async () => dequeue(db, (await db.select().from(devices).where(eq(devices.key, "zz000004")))[0]!.id), ["zz"]],
        ["timed out", () => db.update(devices).set({ rotationState: "TIMEOUT" }).where(eq(devices.key, "00000002")), ["00"]],
        ["unconfirmed", () => db.update(devices).set({ rotationUnconfirmed: true }).where(eq(devices.key, "a0000004")), ["a0"]],
        ["a completed rotation", () => db.update(devices).set({ lastRotationCompletedAt: new Date(now - 9 * DAY_MS) }).where(eq(devices.key, "zz000001")), ["zz"]],
        ["a new device with a new prefix", () => app.services.devices.create({ device_model_id: models[0]!.id, config: "{}" }, "test-admin"), []],
        ["a deleted device", () => db.delete(devices).where(eq(devices.key, "m5000003")), ["m5"]],
      ];
      for (const [change, apply, prefixes] of changes) {
        await apply();
        const created = change.startsWith("a new device") ? (await db.select().from(devices).where(sql`${devices.clientId} not like 'chunk_%'`))[0]!.key.slice(0, 2) : null;
        const marked = created ? [created] : prefixes;
        assert.deepEqual(await dirtyPrefixes(db), [...marked].sort(), `${change} marks its prefixes`);
        await assertDashboard(app.services.rotation, db, at);
        assert.equal(await refreshDashboard(at), marked.length, `${change}: only its chunks are rendered again`);
        assert.deepEqual(await dirtyPrefixes(db), []);
        await assertDashboard(app.services.rotation, db, at);
      }

      await db.update(devices).set({ lastSeenAt: new Date(), config: '{"x":1}' }).where(eq(devices.key, "a1000003"));
      assert.deepEqual(await dirtyPrefixes(db), [], "a change the dashboard does not show marks nothing");
    }, { rendered: false });
  });

  it("renders a chunk from the devices from the millisecond a day of its rows turns, and where its rendering is newer than the clock", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      const [device] = await db.select().from(devices).where(eq(devices.key, "a1000000"));
      const completed = device!.lastRotationCompletedAt!.getTime();
      const turn = new Date(completed + (Math.floor((at.getTime() - completed) / DAY_MS) + 1) * DAY_MS);
      const before = await assertDashboard(app.services.rotation, db, new Date(turn.getTime() - 1));
      const after = await assertDashboard(app.services.rotation, db, turn);
      const days = (groups: typeof before) => dashboardGroups.flatMap((group) => groups[group]).find((row) => row.key === "a1000000")!.days_since_rotation!;
      assert.equal(days(after), days(before) + 1, "the day turned at that millisecond");
      // Another replica's clock, two days behind the one that rendered.
      await assertDashboard(app.services.rotation, db, new Date(at.getTime() - 2 * DAY_MS));
      assert.ok((await app.services.rotation.refreshDashboard(turn)) >= 1);
      await assertDashboard(app.services.rotation, db, turn);
    });
  });

  it("sends a fresh chunk as it is stored, and none written by another rendering (an earlier release's SQL)", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      const [stored] = await db.select().from(dashboardChunks).where(eq(dashboardChunks.prefix, "m5"));
      const marker = '{"stored":true}';
      await db.update(dashboardChunks).set({ healthy: marker }).where(eq(dashboardChunks.prefix, "m5"));
      const texts: string[] = [];
      for await (const batch of app.services.rotation.dashboardJsonChunks("healthy", at)) texts.push(...batch.map((part) => Buffer.from(part.text).toString("utf8")));
      assert.ok(texts.includes(marker), "the stored text is what is sent");
      await db.update(dashboardChunks).set({ healthy: stored!.healthy, renderedBy: "an earlier release" });
      await assertDashboard(app.services.rotation, db, at);
      assert.equal(await app.services.rotation.refreshDashboard(at), 1296);
      await assertDashboard(app.services.rotation, db, at);
    });
  });

  it("marks every prefix when a table is emptied and a device's id changes, and keeps its tables whole", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      await db.execute(sql`truncate rotation_queue`);
      assert.equal((await dirtyPrefixes(db)).length, 1296);
      await assertDashboard(app.services.rotation, db, at);
      await app.services.rotation.refreshDashboard(at);
      await db.update(devices).set({ id: 9999 }).where(eq(devices.key, "a1000004"));
      assert.deepEqual(await dirtyPrefixes(db), ["a1"]);
      await assertDashboard(app.services.rotation, db, at);
      await assert.rejects(db.execute(sql`delete from dashboard_chunks where prefix = 'a1'`), (error: Error) => /not removed by hand/.test(String((error.cause as Error).message)));
      await assert.rejects(db.execute(sql`truncate dashboard_dirty`), (error: Error) => /not removed by hand/.test(String((error.cause as Error).message)));
      await assertDashboard(app.services.rotation, db, at);
    });
  });

  it("marks every prefix when the fleet is queued in statements of many devices, and shows them QUEUED", async () => {
    await withSeededApp(async ({ app, db, at, models }) => {
      const many = Array.from({ length: 1300 }, (_, i) => ({ key: `q${String(i).padStart(7, "0")}`, deviceModelId: models[0]!.id, clientId: `many_${i}`, config: "{}" }));
      await db.insert(devices).values(many);
      await app.services.rotation.refreshDashboard(at);
      await enqueue(db, undefined);
      assert.equal((await dirtyPrefixes(db)).length, 1296);
      const shown = await assertDashboard(app.services.rotation, db, at);
      assert.ok(shown.healthy.filter((row) => row.rotation_state === "QUEUED").length >= 1300);
      await app.services.rotation.refreshDashboard(at);
      await assertDashboard(app.services.rotation, db, at);
    });
  });

  it("a statement read ahead that fails while a batch is being sent takes nobody down", async () => {
    await withSeededApp(async ({ db }) => {
      let calls = 0;
      const rawTexts = async () => {
        if (++calls > 1) throw new Error("connection lost");
        return Array.from({ length: 16 }, (_, i) => [`p${i}`, `{"n":${i}}`, "1", "true"].map((value) => Buffer.from(value)));
      };
      const dashboard = createDashboard({ db, rawTexts, criticalThresholdDays: 7 });
      const unhandled: unknown[] = [];
      const record = (reason: unknown) => unhandled.push(reason);
      process.on("unhandledRejection", record);
      try {
        const chunks = dashboard.chunks("healthy", new Date());
        const first = await chunks.next();
        assert.equal((first.value as unknown[]).length, 16);
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(unhandled, [], "the failure waits for whoever reads on");
        await assert.rejects(chunks.next(), /connection lost/);
        calls = 0;
        const dropped = dashboard.chunks("healthy", new Date());
        await dropped.next();
        await dropped.return(undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(unhandled, [], "nor when nobody reads on");
      } finally {
        process.off("unhandledRejection", record);
      }
    });
  });

  it("renders from the devices where the chunks were rendered with another critical threshold", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      const threeDays = createDashboard({ db, rawTexts: app.services.database.rawTexts, criticalThresholdDays: 3 });
      const rotation = { dashboardJsonChunks: threeDays.chunks };
      const seven = await dashboardOracle(db, at, 7);
      const three = await assertDashboard(rotation, db, at, 3);
      assert.notEqual(three.warning.length, seven.warning.length, "the thresholds split the groups differently");
      assert.equal(await threeDays.refresh(at), 1296);
      await assertDashboard(rotation, db, at, 3);
      await assertDashboard(app.services.rotation, db, at, 7);
    });
  });

  it("keeps the mark of a change committed after the rendering read the devices", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      await db.update(devices).set({ deviceName: "Committed first" }).where(eq(devices.key, "a0000001"));
      const other = postgres(app.services.config.DATABASE_URL!, { max: 1, onnotice: () => {} });
      try {
        await other.begin(async (tx) => {
          await tx`update devices set device_name = 'Committed after' where key = 'a0000003'`;
          assert.equal(await app.services.rotation.refreshDashboard(at), 1, "the rendering does not wait for the open change");
        });
        assert.deepEqual(await dirtyPrefixes(db), ["a0"], "the later change is still marked");
        const shown = await assertDashboard(app.services.rotation, db, at);
        assert.ok(dashboardGroups.some((group) => shown[group].some((row) => row.device_name === "Committed after")));
        assert.equal(await app.services.rotation.refreshDashboard(at), 1);
        await assertDashboard(app.services.rotation, db, at);
      } finally {
        await other.end();
      }
    });
  });

  it("renders in one process at a time, and a rendering that fails stores nothing and loses no mark", async () => {
    await withSeededApp(async ({ app, db, at }) => {
      await db.update(devices).set({ deviceName: "Changed" }).where(eq(devices.key, "m5000001"));
      const other = postgres(app.services.config.DATABASE_URL!, { max: 1, onnotice: () => {} });
      try {
        await other.begin(async (tx) => {
          await tx`select pg_advisory_xact_lock(${DASHBOARD_RENDER_LOCK_ID})`;
          assert.equal(await app.services.rotation.refreshDashboard(at), 0, "another process renders");
          await assertDashboard(app.services.rotation, db, at);
        });
        await other`create function fail_chunk() returns trigger language plpgsql as $$ begin raise exception 'disk full'; end $$`;
        await other`create trigger fail_chunk before update on dashboard_chunks for each row execute function fail_chunk()`;
        await assert.rejects(app.services.rotation.refreshDashboard(at), (error: Error) => /disk full/.test(String((error.cause as Error | undefined)?.message)));
        assert.deepEqual(await dirtyPrefixes(db), ["m5"]);
        await assertDashboard(app.services.rotation, db, at);
        await other`drop trigger fail_chunk on dashboard_chunks`;
        assert.equal(await app.services.rotation.refreshDashboard(at), 1);
        await assertDashboard(app.services.rotation, db, at);
      } finally {
        await other.end();
      }
    });
  });

  it("is rendered by a server in the background and sent by it byte for byte as through the fetch handler", async () => {
    const server = await startTestServer();
    try {
      const db = server.services.database.db;
      await seed(db, Date.now());
      const { database, config } = server.services;
      const dashboard = createDashboard({ db, rawTexts: database.rawTexts, criticalThresholdDays: config.ROTATION_CRITICAL_THRESHOLD_DAYS });
      await waitFor("every chunk rendered", async () => (await dashboard.stale(new Date())) === 0);
      const overSocket = await (await server.admin("GET", "/api/rotation/dashboard")).text();
      const { createApp } = await import("../lib/http/app.ts");
      const { routesFor } = await import("../functions/index.ts");
      const fetchHandler = createApp(routesFor(server.services), server.services);
      const throughFetch = await (
        await fetchHandler(new Request("http://iot.test/api/rotation/dashboard", { headers: { authorization: `Bearer ${server.env.ADMIN_API_TOKEN}` } }))
      ).text();
      assert.equal(overSocket, throughFetch);
      const expected = await dashboardOracle(db, new Date());
      const body = JSON.parse(overSocket);
      for (const group of dashboardGroups) assert.deepEqual(body[group], expected[group]);
      assert.deepEqual(body.counts, { healthy: expected.healthy.length, warning: expected.warning.length, critical: expected.critical.length, unconfirmed: 10 });
    } finally {
      await server.close();
    }
  });

  it("works the same on the embedded PGlite", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "iot-embedded-chunks-"));
    const services = await createServices(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent", EMBEDDED_MQTT: "false" }));
    try {
      await services.database.migrate();
      const { db } = services.database;
      const now = Date.now();
      await seed(db, now);
      const at = new Date(now + 60_000);
      await assertDashboard(services.rotation, db, at);
      assert.equal(await services.rotation.refreshDashboard(at), 1296);
      await db.update(devices).set({ deviceName: "Embedded ✓" }).where(eq(devices.key, "zz000002"));
      await assertDashboard(services.rotation, db, at);
      assert.equal(await services.rotation.refreshDashboard(at), 1);
      await assertDashboard(services.rotation, db, at);
    } finally {
      await services.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
