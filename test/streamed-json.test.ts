/** streamedJson (lib/http/respond.ts): the streamed body is byte for byte JSON.stringify of the same object. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Readable } from "node:stream";
import { directBody } from "../lib/http/direct-body.ts";
import { streamedJson, streamedList } from "../lib/http/respond.ts";
import { allPages, decodeCursor, encodeCursor, type JoinedRows, toPage } from "../lib/paging.ts";

const quiet = { error() {} };

async function* batchesOf<T>(...batches: T[][]) {
  for (const batch of batches) yield batch;
}

/** allPages over an array, `size` rows per page, as a service would answer them. */
const paged = (rows: { key: string }[], size: number) =>
  allPages(async (after) => toPage(rows.filter((row) => after === undefined || row.key > after).slice(0, size + 1), size, (row) => row.key));

/** The body as the Node adapter writes it to the socket (lib/http/direct-body.ts), not through the web stream. */
async function socketText(response: Response) {
  const body = directBody(response);
  assert.ok(body instanceof Readable);
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(Buffer.from(part));
  return Buffer.concat(parts).toString("utf8");
}

describe("streamedJson", () => {
  it("writes what JSON.stringify writes: empty, one and several batches, several arrays, the trailer last", async () => {
    const rows = Array.from({ length: 7 }, (_, i) => ({ key: `k${i}`, name: i % 2 ? null : `"quoted" ${i}`, at: new Date(i * 1000).toISOString() }));
    assert.equal(await (await streamedList("devices", batchesOf(), quiet)).text(), JSON.stringify({ devices: [], count: 0 }));
    assert.equal(await (await streamedList("devices", paged(rows, 3), quiet)).text(), JSON.stringify({ devices: rows, count: 7 }));
    assert.equal(await (await streamedList("devices", paged(rows, 7), quiet)).text(), JSON.stringify({ devices: rows, count: 7 }));
    const response = await streamedJson(
      [
        { name: "healthy", batches: paged(rows, 2) },
        { name: "warning", batches: batchesOf() },
        { name: "critical", batches: batchesOf([{ id: 1 }], [{ id: 2 }]) },
      ],
      async ([healthy, warning, critical]) => ({ counts: { healthy, warning, critical, unconfirmed: 0 } }),
      quiet,
    );
    assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(
      await response.text(),
      JSON.stringify({ healthy: rows, warning: [], critical: [{ id: 1 }, { id: 2 }], counts: { healthy: 7, warning: 0, critical: 2, unconfirmed: 0 } }),
    );
    assert.equal(await socketText(await streamedList("devices", paged(rows, 3), quiet)), JSON.stringify({ devices: rows, count: 7 }));
  });

  it("writes rows that are already JSON, several joined in one text or bytes, counting the rows each holds, to the socket as through the web stream", async () => {
    const rows = Array.from({ length: 6 }, (_, i) => ({ id: i, name: `ünï "${i}"` }));
    const texts = rows.map((row) => JSON.stringify(row));
    const joined = () =>
      streamedJson(
        [
          { name: "healthy", json: true, batches: batchesOf<JoinedRows>([{ text: texts.slice(0, 2).join(","), rows: 2 }, { text: Buffer.from(texts[2]!), rows: 1 }], [{ text: Buffer.from(texts.slice(3).join(",")), rows: 3 }]) },
          { name: "warning", json: true, batches: batchesOf<JoinedRows>() },
        ],
        async ([healthy, warning]) => ({ counts: { healthy, warning } }),
        quiet,
      );
    const expected = JSON.stringify({ healthy: rows, warning: [], counts: { healthy: 6, warning: 0 } });
    assert.equal(await (await joined()).text(), expected);
    assert.equal(await socketText(await joined()), expected);
  });

  it("gives every array's batches back when its body is dropped before it is read, through either body", async () => {
    for (const drop of [(response: Response) => response.body!.cancel(), (response: Response) => (directBody(response) as Readable).destroy()]) {
      const released: string[] = [];
      const tracked = (name: string) =>
        (async function* () {
          try {
            yield [{ name }];
            yield [{ name }];
          } finally {
            released.push(name);
          }
        })();
      const response = await streamedJson([{ name: "a", batches: tracked("a") }, { name: "b", batches: tracked("b") }], async () => ({}), quiet);
      await drop(response);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(released.sort(), ["a"], "the first array, read before the answer started, is given back");
    }
  });

  it("a failure before the first batch is thrown (the envelope answers); one later is logged and ends the body short", async () => {
    await assert.rejects(
      streamedList(
        "devices",
        allPages(async () => {
          throw new Error("database down");
        }),
        quiet,
      ),
      /database down/,
    );
    let calls = 0;
    const failingLater = allPages(async (after) => {
      if (++calls > 1) throw new Error("database gone");
      return { items: [{ key: "a" }], next: after ?? "a" };
    });
    const logged: unknown[] = [];
    const response = await streamedList("devices", failingLater, { error: (message, fields) => logged.push([message, fields]) });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.equal(text, '{"devices":[{"key":"a"}', "the body ends where it broke off, not left hanging");
    assert.throws(() => JSON.parse(text));
    assert.deepEqual(logged, [["A streamed answer broke off", { error: "database gone", rows_sent: 1 }]]);
    calls = 0;
    const overSocket = await streamedList("devices", allPages(async (after) => {
      if (++calls > 1) throw new Error("database gone");
      return { items: [{ key: "a" }], next: after ?? "a" };
    }), quiet);
    assert.equal(await socketText(overSocket), '{"devices":[{"key":"a"}');
  });
});

describe("cursors", () => {
  it("carry the sort key and refuse anything else", () => {
    const pattern = /^[a-z0-9]{8}$/;
    assert.equal(decodeCursor(encodeCursor("abcd1234"), pattern), "abcd1234");
    for (const bad of ["", "%%%", "bm9wZQ", encodeCursor("ABCD1234"), encodeCursor("abc"), Buffer.from('{"after":5}').toString("base64url"), Buffer.from("null").toString("base64url")]) {
      assert.equal(decodeCursor(bad, pattern), null, bad);
    }
  });
});
