/**
 * The long lists over HTTP on a real server and PostgreSQL (docs/api.md, "Long lists"): pages by key and code with
 * limit and cursor, the filters and q, bad input refused with the envelope, and the answer without paging streamed
 * byte for byte as the whole list was sent before.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import { deviceModels, devices, rotationQueue } from "../db/schema.ts";
import { deviceClientId, generateDeviceKey } from "../lib/devices.ts";
import { allPages, MAX_PAGE_LIMIT } from "../lib/paging.ts";
import { queueAllOk } from "../lib/rotation/schedule.ts";
import { deviceSummarySchema } from "../lib/schemas.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { dashboardOracle } from "./support/dashboard-oracle.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

/** More than one streaming batch (MAX_PAGE_LIMIT rows each). */
const SEEDED = 2_345;
const DAY_MS = 86_400_000;

describe("long device and model lists", () => {
  let server: TestServer;
  let modelId: number;
  let otherModelId: number;
  const db = () => server.services.database.db;
  const get = async (path: string) => {
    const response = await server.admin("GET", path);
    return { status: response.status, body: await response.json() };
  };

  before(async () => {
    server = await startTestServer();
    const [model] = await db().insert(deviceModels).values({ code: "meter", name: "Power Meter" }).returning();
    const [other] = await db().insert(deviceModels).values({ code: "lamp", name: "Garden Lamp" }).returning();
    modelId = model!.id;
    otherModelId = other!.id;
    const keys = new Set<string>();
    while (keys.size < SEEDED) keys.add(generateDeviceKey());
    const rows = [...keys].map((key, i) => ({
      key,
      deviceModelId: i % 5 === 0 ? otherModelId : modelId,
      clientId: deviceClientId(i % 5 === 0 ? "lamp" : "meter", key),
      config: JSON.stringify({ deviceName: `Room ${i}` }),
      deviceName: i % 7 === 0 ? null : `Room ${i}`,
      rotationState: i % 3 === 0 ? ("TIMEOUT" as const) : ("OK" as const),
    }));
    for (let i = 0; i < rows.length; i += 1000) await db().insert(devices).values(rows.slice(i, i + 1000));
  });
  after(() => server?.close());

  /** Every page of a list through HTTP, following next_cursor. */
  async function walk(path: string, listKey: "devices" | "device_models", between?: (pageNumber: number) => Promise<void>) {
    const rows: { key?: string; code?: string; id: number }[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const separator = path.includes("?") ? "&" : "?";
      const { status, body } = await get(`${path}${cursor ? `${separator}cursor=${cursor}` : ""}`);
      assert.equal(status, 200);
      assert.equal(body.count, body[listKey].length);
      assert.ok("next_cursor" in body);
      rows.push(...body[listKey]);
      cursor = body.next_cursor;
      pages++;
      if (between) await between(pages);
    } while (cursor !== null);
    return { rows, pages };
  }

  test("the unparameterised list is streamed and byte for byte the whole list as before: all fields, by key, count last", async () => {
    const response = await server.admin("GET", "/api/devices");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(response.headers.get("content-length"), null, "streamed, not sent as one known-length body");
    const text = await response.text();
    const all = [];
    for await (const batch of allPages((after) => server.services.devices.page({ after, limit: MAX_PAGE_LIMIT }))) all.push(...batch);
    assert.equal(all.length, SEEDED);
    assert.equal(text, JSON.stringify({ devices: all, count: all.length }));
    assert.deepEqual(Object.keys(JSON.parse(text).devices[0]), Object.keys(deviceSummarySchema.shape), "every DeviceSummary field");
    const keys = all.map((d) => d.key);
    assert.deepEqual(keys, [...keys].sort());

    const filtered = await get(`/api/devices?model_id=${otherModelId}&rotation_state=TIMEOUT`);
    assert.equal(filtered.body.count, all.filter((d) => d.device_model_id === otherModelId && d.rotation_state === "TIMEOUT").length);
    assert.equal(filtered.body.next_cursor, undefined, "no next_cursor without paging");
    const none = await server.admin("GET", "/api/devices?q=nothing-like-this");
    assert.equal(await none.text(), '{"devices":[],"count":0}');
  });

  test("paging visits every device once, in key order, also while devices are added and deleted between pages", async () => {
    const before = (await get("/api/devices")).body.devices as { key: string; id: number }[];
    const deleted: string[] = [];
    const added: string[] = [];
    const { rows, pages } = await walk("/api/devices?limit=400", "devices", async (page) => {
      if (page > 3) return;
      // One device the walk has not reached yet goes, one new one comes (its key lands anywhere).
      const victim = before[before.length - page * 100]!;
      await db().delete(devices).where(eq(devices.id, victim.id));
      deleted.push(victim.key);
      const key = generateDeviceKey();
      await db().insert(devices).values({ key, deviceModelId: modelId, clientId: deviceClientId("meter", key), config: "{}" });
      added.push(key);
    });
    assert.equal(pages, Math.ceil(rows.length / 400));
    const keys = rows.map((d) => d.key!);
    assert.deepEqual(keys, [...keys].sort(), "in key order");
    assert.equal(new Set(keys).size, keys.length, "no device twice");
    const listed = new Set(keys);
    for (const { key } of before) assert.equal(listed.has(key), !deleted.includes(key), `device ${key}`);
    assert.equal(rows.length, before.length - deleted.length + added.filter((key) => listed.has(key)).length);
  });

  test("filters and q narrow the pages; q matches key or name, ignoring case", async () => {
    const all = (await get("/api/devices")).body.devices as { key: string; device_name: string | null; device_model_id: number; rotation_state: string }[];
    const expected = all.filter((d) => d.device_model_id === modelId && d.rotation_state === "TIMEOUT").map((d) => d.key);
    const { rows } = await walk(`/api/devices?model_id=${modelId}&rotation_state=TIMEOUT&limit=250`, "devices");
    assert.deepEqual(rows.map((d) => d.key), expected);

    const byName = await walk("/api/devices?q=ROOM%2012&limit=5", "devices");
    assert.deepEqual(byName.rows.map((d) => d.key), all.filter((d) => d.device_name?.toLowerCase().includes("room 12")).map((d) => d.key));
    const target = all[42]!;
    const byKey = await get(`/api/devices?q=${target.key.toUpperCase()}&limit=10`);
    assert.ok(byKey.body.devices.some((d: { key: string }) => d.key === target.key));
    assert.equal(byKey.body.next_cursor, null);
  });

  test("models page by code and search code and name", async () => {
    for (const code of ["zeta", "alpha_x", "mid"]) await server.admin("POST", "/api/device-models", { code, name: `Kind ${code}` });
    const { rows, pages } = await walk("/api/device-models?limit=2", "device_models");
    const codes = rows.map((m) => m.code!);
    assert.deepEqual(codes, ["alpha_x", "lamp", "meter", "mid", "zeta"]);
    assert.equal(pages, 3);
    const whole = await server.admin("GET", "/api/device-models");
    const text = await whole.text();
    const parsed = JSON.parse(text);
    assert.equal(text, JSON.stringify({ device_models: parsed.device_models, count: 5 }));
    assert.deepEqual(Object.keys(parsed.device_models[0]), ["id", "code", "name", "firmware_version", "has_config_schema", "device_count"]);
    assert.deepEqual((await get("/api/device-models?q=GARDEN")).body.device_models.map((m: { code: string }) => m.code), ["lamp"]);
    assert.deepEqual((await get("/api/device-models?q=a_x&limit=10")).body.device_models.map((m: { code: string }) => m.code), ["alpha_x"]);
  });

  test("the dashboard is streamed group by group, byte for byte what it was when built whole", async () => {
    const timedOut = await db().select({ id: devices.id }).from(devices).where(eq(devices.rotationState, "TIMEOUT")).orderBy(devices.id).limit(40);
    for (const [i, { id }] of timedOut.entries()) {
      // 2.5 days ago (warning under the default 7), 10.5 days ago (critical), or never (critical); some unconfirmed.
      const completed = i % 3 === 0 ? null : new Date(Date.now() - (i % 3 === 1 ? 2.5 : 10.5) * DAY_MS);
      await db().update(devices).set({ lastRotationCompletedAt: completed, rotationUnconfirmed: i % 4 === 0 }).where(eq(devices.id, id));
    }
    const response = await server.admin("GET", "/api/rotation/dashboard");
    assert.equal(response.status, 200);
    const text = await response.text();

    // What the dashboard answered before it was streamed: every device read at once, grouped in memory.
    const groups = await dashboardOracle(db(), new Date());
    const unconfirmed = Object.values(groups).flat().filter((row) => row.rotation_unconfirmed).length;
    const before = { ...groups, counts: { healthy: groups.healthy.length, warning: groups.warning.length, critical: groups.critical.length, unconfirmed } };
    assert.ok(before.counts.warning > 0 && before.counts.critical > 0 && before.counts.healthy > MAX_PAGE_LIMIT && unconfirmed > 0);
    assert.equal(text, JSON.stringify(before));
  });

  test("the dashboard a group at a time: every page of each group is that group of the whole answer, in order, with its counts", async () => {
    const whole = await get("/api/rotation/dashboard");
    assert.equal(whole.status, 200);
    assert.ok(whole.body.warning.length > 0 && whole.body.critical.length > 0 && whole.body.healthy.length > MAX_PAGE_LIMIT);
    for (const group of ["healthy", "warning", "critical"] as const) {
      for (const limit of group === "healthy" ? [7, 1000] : [7]) {
        const rows: unknown[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const response = await server.admin("GET", `/api/rotation/dashboard?group=${group}&limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
          assert.equal(response.status, 200);
          const text = await response.text();
          const body = JSON.parse(text);
          assert.deepEqual(Object.keys(body), ["group", "devices", "next_cursor", "counts"]);
          assert.equal(body.group, group);
          assert.ok(body.devices.length <= limit);
          assert.deepEqual(body.counts, whole.body.counts);
          rows.push(...body.devices);
          cursor = body.next_cursor;
          pages++;
        } while (cursor !== null);
        assert.deepEqual(rows, whole.body[group], `${group}, pages of ${limit}`);
        assert.equal(pages, Math.max(1, Math.ceil(whole.body[group].length / limit)));
      }
    }
    // group alone: the first page of 100; a cursor without limit: the next 100.
    const first = await get("/api/rotation/dashboard?group=critical");
    assert.deepEqual(first.body.devices, whole.body.critical.slice(0, 100));
    const second = await get(`/api/rotation/dashboard?group=critical&cursor=${first.body.next_cursor}`);
    assert.deepEqual(second.body.devices, whole.body.critical.slice(100, 200));
  });

  test("a bad dashboard group, limit or cursor, or a cursor of another group, is 400 VALIDATION_FAILED with the envelope", async () => {
    const healthyCursor = (await get("/api/rotation/dashboard?group=healthy&limit=2")).body.next_cursor as string;
    const criticalCursor = (await get("/api/rotation/dashboard?group=critical&limit=2")).body.next_cursor as string;
    const deviceCursor = (await get("/api/devices?limit=2")).body.next_cursor as string;
    const bad: [string, string][] = [
      ["group=", "group"],
      ["group=HEALTHY", "group"],
      ["group=unhealthy", "group"],
      ["limit=10", "group"],
      [`cursor=${healthyCursor}`, "group"],
      ["group=healthy&limit=0", "limit"],
      ["group=healthy&limit=1001", "limit"],
      ["group=healthy&limit=abc", "limit"],
      ["group=healthy&cursor=%%%", "cursor"],
      ["group=healthy&cursor=", "cursor"],
      ["group=healthy&cursor=bm9wZQ", "cursor"],
      [`group=healthy&cursor=${deviceCursor}`, "cursor"],
      [`group=healthy&cursor=${criticalCursor}`, "cursor"],
      [`group=critical&cursor=${healthyCursor}`, "cursor"],
      [`group=warning&limit=5&cursor=${healthyCursor}`, "cursor"],
      ["group=healthy&sort=key", "sort"],
    ];
    for (const [query, field] of bad) {
      const response = await server.admin("GET", `/api/rotation/dashboard?${query}`);
      const body = await assertErrorEnvelope(response, 400, query);
      assert.equal(body.code, "VALIDATION_FAILED");
      assert.equal((body.details as { errors: { field: string }[] }).errors[0]!.field, field, query);
    }
  });

  test("a bad limit or cursor is 400 VALIDATION_FAILED with the envelope, and changes nothing", async () => {
    const countBefore = (await get("/api/devices")).body.count;
    const foreign = Buffer.from(JSON.stringify({ after: "../../etc" })).toString("base64url");
    for (const query of ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1e2", "cursor=%%%", "cursor=bm9wZQ", `cursor=${foreign}`, "cursor=", "q="]) {
      for (const path of ["/api/devices", "/api/device-models"]) {
        const { status, body } = await get(`${path}?${query}`);
        assert.equal(status, 400, `${path}?${query}`);
        assert.equal(body.code, "VALIDATION_FAILED");
        assert.equal(typeof body.error, "string");
        assert.equal(typeof body.correlationId, "string");
        assert.equal(body.details.errors[0].field, query.split("=")[0]);
      }
    }
    assert.equal((await get("/api/devices")).body.count, countBefore);
  });

  test("queueing the fleet queues every OK device, key range by key range in one transaction, nothing else, and shows it everywhere", async () => {
    const before = await server.services.rotation.countsByState();
    assert.ok(before.OK > 1000);
    const timedOut = await get(`/api/devices?rotation_state=TIMEOUT&limit=${MAX_PAGE_LIMIT}`);
    assert.equal(await db().transaction((tx) => queueAllOk(tx, 333)), before.OK, "key range by key range");
    assert.deepEqual(await server.services.rotation.countsByState(), { ...before, OK: 0, QUEUED: before.OK });
    assert.deepEqual((await get(`/api/devices?rotation_state=TIMEOUT&limit=${MAX_PAGE_LIMIT}`)).body, timedOut.body, "TIMEOUT devices stay as they are");
    const firstQueued: { id: number }[] = (await get("/api/devices?rotation_state=QUEUED&limit=5")).body.devices;
    assert.equal(firstQueued.length, 5);
    for (const device of firstQueued) assert.equal((await get(`/api/devices/${device.id}`)).body.rotation_state, "QUEUED");
    assert.equal(await db().transaction((tx) => queueAllOk(tx)), 0, "queued devices are not queued twice");
    await db().delete(rotationQueue);
    const trigger = await server.admin("POST", "/api/rotation/trigger");
    assert.deepEqual(await trigger.json(), { queued_count: before.OK });
  });
});
