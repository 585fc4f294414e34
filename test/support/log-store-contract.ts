/**
 * What a device-log store (lib/device-logs/store.ts) must do, run against PostgreSQL (test/device-logs-store.test.ts)
 * and the in-memory fake (test/unit/fakes.test.ts): range reads oldest first, the query filter, retention by age (whole
 * days) and by size (a device's oldest lines).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LogStore, StoredLine } from "../../lib/device-logs/store.ts";

const DAY_MS = 86_400_000;
/** Noon of a fixed day, so a test's lines never straddle midnight. */
const NOON = Date.parse("2026-11-20T12:00:00.000Z");

const line = (deviceId: number, ms: number, message: string, offsetUs = 0): StoredLine => ({ deviceId, stampUs: ms * 1000 + offsetUs, message, attributes: null });

export function describeLogStoreContract(name: string, open: () => Promise<{ store: LogStore; close(): Promise<void> }>) {
  describe(`device log store contract: ${name}`, () => {
    let store: LogStore;
    let close: () => Promise<void>;
    before(async () => ({ store, close } = await open()));
    after(() => close?.());

    const all = (deviceId: number, from = NOON - 30 * DAY_MS, to = NOON + 30 * DAY_MS) =>
      store.read(deviceId, { start: new Date(from), end: new Date(to), limit: 100_000 }).then((rows) => rows.map((row) => row.message));

    it("reads one device's lines in [start, end), oldest first, up to the limit, with millisecond timestamps", async () => {
      await store.insert([line(1, NOON + 5, "c"), line(1, NOON, "a"), line(1, NOON, "b", 1), line(2, NOON + 1, "other"), line(1, NOON + 10, "end")]);
      const rows = await store.read(1, { start: new Date(NOON), end: new Date(NOON + 10), limit: 10 });
      assert.deepEqual(rows.map((row) => row.message), ["a", "b", "c"]);
      assert.deepEqual(rows.map((row) => row.ts.getTime()), [NOON, NOON, NOON + 5]);
      assert.deepEqual((await store.read(1, { start: new Date(NOON), end: new Date(NOON + 11), limit: 2 })).map((row) => row.message), ["a", "b"]);
      assert.deepEqual(await all(3), []);
    });

    it("filters case-insensitively by substring, `*` standing for any run and % or _ meaning themselves", async () => {
      await store.insert([line(4, NOON, "WiFi lost"), line(4, NOON + 1, "wifi back, link up"), line(4, NOON + 2, "50% done"), line(4, NOON + 3, "50 items_x")]);
      const read = (query: string) => store.read(4, { start: new Date(NOON), end: new Date(NOON + 10), query, limit: 10 }).then((rows) => rows.map((row) => row.message));
      assert.deepEqual(await read("wifi"), ["WiFi lost", "wifi back, link up"]);
      assert.deepEqual(await read("WIFI*UP"), ["wifi back, link up"]);
      assert.deepEqual(await read("50%"), ["50% done"]);
      assert.deepEqual(await read("s_x"), ["50 items_x"]);
      assert.deepEqual(await read("m_"), []);
    });

    it("drops whole days that ended more than the retention ago, and keeps the rest", async () => {
      await store.insert([line(5, NOON - 9 * DAY_MS, "nine days"), line(5, NOON - 8 * DAY_MS, "eight days"), line(5, NOON - 7 * DAY_MS, "seven days"), line(5, NOON, "today")]);
      await store.prepare(new Date(NOON));
      assert.ok((await store.dropOlderThan(new Date(NOON), 7)) >= 2);
      assert.deepEqual(await all(5), ["seven days", "today"]);
      // Lines can still be stored on a dropped day's date (a clock set back): the store makes room again.
      await store.insert([line(5, NOON - 9 * DAY_MS, "late")]);
      assert.deepEqual(await all(5), ["late", "seven days", "today"]);
    });

    it("deletes the oldest lines of a device beyond its size, across days, and leaves smaller devices alone", async () => {
      const lines = [
        ...Array.from({ length: 6 }, (_, i) => line(6, NOON - DAY_MS + i, `yesterday ${i}`)),
        ...Array.from({ length: 6 }, (_, i) => line(6, NOON + i, `today ${i}`)),
        ...Array.from({ length: 3 }, (_, i) => line(7, NOON + i, `small ${i}`)),
      ];
      // Written in several batches, as the writer does.
      await store.insert(lines.slice(0, 4));
      await store.insert(lines.slice(4));
      assert.equal(await store.trimDevices(4), 8);
      assert.deepEqual(await all(6), ["today 2", "today 3", "today 4", "today 5"]);
      assert.equal((await all(7)).length, 3);
      assert.equal(await store.trimDevices(4), 0);
      await store.insert([line(6, NOON + 100, "newest")]);
      assert.equal(await store.trimDevices(4), 1);
      assert.deepEqual(await all(6), ["today 3", "today 4", "today 5", "newest"]);
    });
  });
}
