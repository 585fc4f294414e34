/**
 * GET /api/events (issue 15, live): two server instances on one PostgreSQL, a client of one sees what was done through
 * the other (LISTEN/NOTIFY), device log lines filtered by device, resuming with Last-Event-ID after a dropped
 * connection, heartbeats, and a client that stops reading is cut off.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import type { Notifier } from "../lib/mqtt.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { createFleet, expireNow } from "./support/fleet.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { ADMIN_TOKEN } from "./support/tokens.ts";
import { waitFor } from "./support/wait.ts";

type Frame = { id: number | null; event: string; data: Record<string, unknown> | null; comment: string | null };

/** An SSE client reading frames as they come. */
async function openStream(server: TestServer, query = "", headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const response = await fetch(`${server.url}/api/events${query}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }, signal: controller.signal });
  assert.equal(response.status, 200, await (response.status === 200 ? Promise.resolve("") : response.text()));
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  const frames: Frame[] = [];
  let ended = false;
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const frame: Frame = { id: null, event: "message", data: null, comment: null };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) frame.comment = line.slice(1).trim();
            else if (line.startsWith("id: ")) frame.id = Number(line.slice(4));
            else if (line.startsWith("event: ")) frame.event = line.slice(7);
            else if (line.startsWith("data: ")) frame.data = JSON.parse(line.slice(6));
          }
          frames.push(frame);
        }
      }
    } catch {
      // aborted by the test, or cut off by the server
    } finally {
      ended = true;
    }
  })();
  return {
    frames,
    events: () => frames.filter((frame) => frame.id !== null),
    ended: () => ended,
    async close() {
      controller.abort();
      await reading;
    },
  };
}

const unique = () => randomBytes(3).toString("hex");

describe("live events", () => {
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    a = await startTestServer({ env: { EVENTS_HEARTBEAT_SECONDS: "1" } });
    b = await startTestServer({ databaseUrl: a.databaseUrl });
  });
  after(async () => {
    await b?.stop();
    await a?.close();
  });

  const createModel = async (server: TestServer) => (await (await server.admin("POST", "/api/device-models", { code: `ev${unique()}`, name: "Events" })).json()) as { id: number; code: string };
  const createDevice = async (server: TestServer, modelId: number) =>
    (await (await server.admin("POST", "/api/devices", { device_model_id: modelId, config: "{}" })).json()) as { id: number; key: string; client_id: string };

  test("only admins may listen", async () => {
    await assertErrorEnvelope(await fetch(`${a.url}/api/events`), 401, "no token");
    await assertErrorEnvelope(await a.admin("GET", "/api/events?device_id=x"), 400, "bad device_id");
  });

  test("a client of one instance gets what was done through the other, with ids, and heartbeats while idle", async () => {
    const stream = await openStream(a);
    try {
      const model = await createModel(b);
      const device = await createDevice(b, model.id);
      await b.admin("PUT", `/api/devices/${device.id}`, { config: JSON.stringify({ deviceName: "Renamed" }) });
      await waitFor("the three events", async () => stream.events().length >= 3);
      const seen = stream.events().map((frame) => [frame.event, frame.data?.device_id ?? frame.data?.device_model_id]);
      assert.deepEqual(seen.slice(0, 3), [
        ["model.created", model.id],
        ["device.created", device.id],
        ["device.updated", device.id],
      ]);
      const ids = stream.events().map((frame) => frame.id!);
      assert.deepEqual([...ids].sort((x, y) => x - y), ids);
      await waitFor("a heartbeat", async () => stream.frames.some((frame) => frame.comment === "keep-alive"), 5_000);
    } finally {
      await stream.close();
    }
  });

  test("device log lines, filtered by device", async () => {
    const model = await createModel(a);
    const device = await createDevice(a, model.id);
    const other = await createDevice(a, model.id);
    const token = async (clientId: string) => (await b.services.builtinIssuer!.issueToken(clientId, 1)).access_token;
    const stream = await openStream(a, `?device_id=${device.id}&types=device.logs`);
    try {
      for (const [target, message] of [[other, "not this one"], [device, "\u001b[0;32mI (5) app: hello\u001b[0m"]] as const) {
        const response = await fetch(`${b.url}/iot/logs`, {
          method: "POST",
          headers: { authorization: `Bearer ${await token(target.client_id)}`, "content-type": "application/x-ndjson" },
          body: JSON.stringify({ message }),
        });
        assert.equal(response.status, 202);
      }
      await waitFor("the log event", async () => stream.events().length >= 1);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const events = stream.events();
      assert.equal(events.length, 1);
      assert.equal(events[0]!.event, "device.logs");
      assert.equal(events[0]!.data!.device_id, device.id);
      assert.deepEqual((events[0]!.data!.lines as { message: string }[]).map((line) => line.message), ["I (5) app: hello"]);
    } finally {
      await stream.close();
    }
  });

  test("a client that reconnects with Last-Event-ID gets what it missed, and nothing twice", async () => {
    const first = await openStream(a);
    const model = await createModel(b);
    await waitFor("the first event", async () => first.events().some((frame) => frame.data?.device_model_id === model.id));
    const lastId = first.events().at(-1)!.id!;
    await first.close();

    // While disconnected:
    const device = await createDevice(b, model.id);
    await b.admin("DELETE", `/api/devices/${device.id}`);

    const second = await openStream(a, "", { "last-event-id": String(lastId) });
    try {
      const later = await createModel(b);
      await waitFor("the missed and the new events", async () => second.events().some((frame) => frame.data?.device_model_id === later.id));
      const seen = second.events().map((frame) => `${frame.event} ${frame.data?.device_id ?? frame.data?.device_model_id}`);
      assert.deepEqual(seen, [`device.created ${device.id}`, `device.deleted ${device.id}`, `model.created ${later.id}`]);
      assert.ok(second.events().every((frame) => frame.id! > lastId));
    } finally {
      await second.close();
    }
  });

  test("a client that stops reading is dropped instead of growing the server's memory", async () => {
    const slow = await startTestServer({ databaseUrl: a.databaseUrl, env: { EVENTS_CLIENT_BUFFER_BYTES: "4096" } });
    const metric = async (name: string) => (await slow.services.metrics.registry.getSingleMetric(name)!.get()).values.reduce((sum, v) => sum + v.value, 0);
    try {
      // A raw connection whose reader never reads: the socket's buffers fill, then the server's queue.
      const req = httpRequest(`${slow.url}/api/events`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => res.pause());
      req.end();
      await waitFor("the client to be connected", async () => (await metric("iot_event_stream_clients")) === 1);
      const model = await createModel(a);
      const device = await createDevice(a, model.id);
      const token = (await a.services.builtinIssuer!.issueToken(device.client_id, 1)).access_token;
      const line = JSON.stringify({ message: "x".repeat(4000) });
      for (let i = 0; i < 400 && (await metric("iot_event_stream_clients_dropped_total")) === 0; i++) {
        await fetch(`${a.url}/iot/logs`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/x-ndjson" },
          body: Array(10).fill(line).join("\n"),
        });
        await a.services.deviceLogs.flush();
      }
      await waitFor("the slow client to be dropped", async () => (await metric("iot_event_stream_clients_dropped_total")) === 1);
      assert.equal(await metric("iot_event_stream_clients"), 0);
      req.destroy();
    } finally {
      await slow.stop();
    }
  });
});

describe("live events of the rotation queue", () => {
  let server: TestServer;
  let notices = false;
  // Connected, and acknowledging a notice only while `notices` is on (off: the PUBACK never comes).
  const notifier: Notifier = { state: () => "connected", waitUntilConnected: async () => true, publish: async () => notices, close: async () => {} };
  before(async () => {
    server = await startTestServer({ overrides: { notifier } });
  });
  after(() => server?.close());

  test("rotation.state says what a device shows: joining the queue, starting, back after a failed notice, timing out", async () => {
    const stream = await openStream(server, "?types=rotation.state,device.updated");
    try {
      const [first, second, third] = await createFleet(server, 3);
      await server.admin("POST", `/api/devices/${first!.id}/rotate`); // queued, started, its notice fails: queued again
      await server.admin("PUT", `/api/devices/${first!.id}`, { config: JSON.stringify({ deviceName: "Renamed while queued" }) });
      notices = true;
      assert.deepEqual(await (await server.admin("POST", "/api/rotation/trigger")).json(), { queued_count: 2 }); // the first starts: oldest secret
      await expireNow(server, first!.id);
      await server.services.rotation.runCycle(); // the first times out, the second starts

      const expected = {
        [first!.id]: ["OK→QUEUED", "QUEUED→PENDING", "PENDING→QUEUED", "device.updated", "QUEUED→PENDING", "PENDING→TIMEOUT"],
        [second!.id]: ["OK→QUEUED", "QUEUED→PENDING"],
        [third!.id]: ["OK→QUEUED"],
      };
      const seen = () => {
        const byDevice: Record<number, string[]> = { [first!.id]: [], [second!.id]: [], [third!.id]: [] };
        for (const { event, data } of stream.events()) {
          byDevice[data!.device_id as number]?.push(event === "rotation.state" ? `${data!.from}→${data!.to}` : event);
        }
        return byDevice;
      };
      await waitFor("the events of the three devices", async () => JSON.stringify(seen()) === JSON.stringify(expected), 5_000).catch(() => {});
      assert.deepEqual(seen(), expected);
      const shown = await Promise.all([first, second, third].map(async (device) => (await (await server.admin("GET", `/api/devices/${device!.id}`)).json()).rotation_state));
      assert.deepEqual(shown, ["TIMEOUT", "PENDING", "QUEUED"], "the devices show the state their last event named");
    } finally {
      await stream.close();
    }
  });
});
