/** The shared in-memory copy of firmware images (lib/firmware/cache.ts): budget, order of eviction, shared reads. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createImageCache } from "../lib/firmware/cache.ts";

const bytes = (size: number, fill: number) => Buffer.alloc(size, fill);

/** A loader that counts its calls and can be held open or made to fail. */
function loader(size: number, fill: number) {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const state = {
    calls: 0,
    held: false,
    fail: false,
    release,
    load: async () => {
      state.calls++;
      if (state.held) await gate;
      if (state.fail) throw new Error("disk error");
      return bytes(size, fill);
    },
  };
  return state;
}

test("an image is read once; every later request gets the same bytes, not a copy", async () => {
  const cache = createImageCache(1000);
  const image = loader(100, 1);
  const first = await cache.get("a", 100, image.load)!;
  const second = await cache.get("a", 100, image.load)!;
  assert.equal(image.calls, 1);
  assert.equal(first, second);
  assert.equal(cache.usedBytes(), 100);
});

test("requests that arrive while the image loads share the one read", async () => {
  const cache = createImageCache(1000);
  const image = loader(100, 1);
  image.held = true;
  const pending = Array.from({ length: 10 }, () => cache.get("a", 100, image.load)!);
  image.release();
  const results = await Promise.all(pending);
  assert.equal(image.calls, 1);
  assert.ok(results.every((result) => result === results[0]));
});

test("the budget holds: the least recently used images leave first", async () => {
  const cache = createImageCache(300);
  const [a, b, c, d] = [loader(100, 1), loader(100, 2), loader(100, 3), loader(150, 4)];
  await cache.get("a", 100, a.load);
  await cache.get("b", 100, b.load);
  await cache.get("c", 100, c.load);
  await cache.get("a", 100, a.load); // a is now the most recently used; b the least
  await cache.get("d", 150, d.load); // needs 150: b and c leave, a stays
  assert.equal(cache.usedBytes(), 250);
  await cache.get("a", 100, a.load);
  assert.equal(a.calls, 1, "a was kept");
  await cache.get("b", 100, b.load);
  assert.equal(b.calls, 2, "b was dropped and is read again");
  assert.ok(cache.usedBytes() <= 300);
});

test("an image larger than the budget is not kept (the caller reads it from disk); a budget of 0 keeps nothing", () => {
  const small = createImageCache(100);
  const big = loader(101, 1);
  assert.equal(small.get("big", 101, big.load), null);
  assert.equal(big.calls, 0);
  assert.equal(createImageCache(0).get("a", 1, loader(1, 1).load), null);
});

test("a failed read is not kept: the next request reads again", async () => {
  const cache = createImageCache(1000);
  const image = loader(100, 1);
  image.fail = true;
  await assert.rejects(cache.get("a", 100, image.load)!, /disk error/);
  assert.equal(cache.usedBytes(), 0);
  image.fail = false;
  assert.equal((await cache.get("a", 100, image.load)!).length, 100);
  assert.equal(image.calls, 2);
});

test("forget drops an image (a replaced or deleted firmware); holders of its bytes keep them", async () => {
  const cache = createImageCache(1000);
  const image = loader(100, 7);
  const held = await cache.get("a", 100, image.load)!;
  cache.forget("a");
  assert.equal(cache.usedBytes(), 0);
  assert.equal(held[0], 7);
  await cache.get("a", 100, image.load);
  assert.equal(image.calls, 2);
  cache.forget("never-loaded");
  assert.equal(cache.usedBytes(), 100);
});
