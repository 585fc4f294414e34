/**
 * patches/postgres+3.4.9.patch: postgres.js keeps its connections and waiting queries in queues whose array only
 * shrinks when the queue empties. A pool kept busy (more concurrent queries than connections, e.g. a fleet
 * fetching a new firmware at once) never empties its busy queue, so the array grew by one entry per query and
 * every query scanned all of it: after 400,000 such queries a query cost 200 µs of CPU instead of 30, for good.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

type Queue<T> = { length: number; push(x: T): T; shift(): T; remove(x: T): T | null };

// The file the driver itself imports (package "exports" → src/index.js → ./queue.js).
const queueModule = new URL("../node_modules/postgres/src/queue.js", import.meta.url).href;
const { default: createQueue } = (await import(queueModule)) as { default: <T>() => Queue<T> };

/** The largest array Array.prototype.indexOf was asked to scan while `work` ran (remove() is its only caller). */
function largestScan(work: () => void): number {
  const indexOf = Array.prototype.indexOf;
  let largest = 0;
  Array.prototype.indexOf = function (this: unknown[], ...args: Parameters<typeof indexOf>) {
    largest = Math.max(largest, this.length);
    return indexOf.apply(this, args);
  };
  try {
    work();
  } finally {
    Array.prototype.indexOf = indexOf;
  }
  return largest;
}

test("a busy queue that never empties stays small: 100,000 queries on 10 busy connections", () => {
  const busy = createQueue<{ id: number }>();
  const connections = Array.from({ length: 10 }, (_, id) => ({ id }));
  for (const connection of connections) busy.push(connection);
  // What postgres.js does for each query while every connection is busy: pipeline it on the first busy
  // connection (shift), then move that connection back to the busy queue (remove, push).
  const scanned = largestScan(() => {
    for (let query = 0; query < 100_000; query++) {
      const connection = busy.shift();
      busy.remove(connection);
      busy.push(connection);
    }
  });
  assert.ok(scanned <= 200, `remove() scanned an array of ${scanned} entries`);
  assert.equal(busy.length, 10);
  const order = Array.from({ length: 10 }, () => busy.shift().id);
  assert.deepEqual([...order].sort((a, b) => a - b), connections.map((c) => c.id), "every connection is still there, once");
  assert.equal(busy.length, 0);
});

test("the queue keeps its order and removes what it is asked to, across compactions", () => {
  const queue = createQueue<number>();
  const expected: number[] = [];
  for (let i = 0; i < 1000; i++) {
    queue.push(i);
    expected.push(i);
    if (i % 3 === 0) assert.equal(queue.shift(), expected.shift());
    if (i % 7 === 0 && expected.length > 2) {
      const victim = expected.splice(1, 1)[0]!;
      assert.equal(queue.remove(victim), victim);
    }
    assert.equal(queue.length, expected.length);
  }
  assert.equal(queue.remove(-1), null);
  while (expected.length > 0) assert.equal(queue.shift(), expected.shift());
  assert.equal(queue.length, 0);
});
