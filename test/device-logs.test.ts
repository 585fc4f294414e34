/**
 * Device logs (issue 15) on a real server, PostgreSQL and Mosquitto: the deployed firmware's log payload on the shared
 * topic end to end, a device's own topic, POST /iot/logs with bad lines among good ones and its limits, the web UI's
 * polling (start = the previous window_end) against a device that keeps printing, retention by age and by size (in
 * the server and by the CronJob's command), a database outage that loses no line the broker delivered, the subscriber
 * moving between two replicas, and a restart of the broker (one of the test's own).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import mqtt from "mqtt";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { type DatabaseProxy, startDatabaseProxy } from "./support/database-proxy.ts";
import { createTestDatabase } from "./support/database.ts";
import { bareEnv, runEntry } from "./support/process.ts";
import { freePort, MQTT_TEST_URL, startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

const DAY_MS = 86_400_000;
type Device = { id: number; client_id: string; token: string; entity: string };
type Page = { logs: { timestamp: string; message: string }[]; has_more: boolean; window_start: string; window_end: string };

const unique = () => randomBytes(4).toString("hex");

async function createDevice(server: TestServer, modelId: number): Promise<Device> {
  const entity = `sensor.kitchen_${unique()}`;
  const response = await server.admin("POST", "/api/devices", { device_model_id: modelId, config: JSON.stringify({ deviceName: "Kitchen", deviceEntityId: entity }) });
  assert.equal(response.status, 201, await response.clone().text());
  const created = (await response.json()) as { id: number; client_id: string };
  const token = (await server.services.builtinIssuer!.issueToken(created.client_id, 1)).access_token;
  return { ...created, token, entity };
}

async function createModel(server: TestServer): Promise<number> {
  const response = await server.admin("POST", "/api/device-models", { code: `m${unique()}`, name: "Sensor" });
  return ((await response.json()) as { id: number }).id;
}

const postLogs = (server: TestServer, device: Device, body: string, contentType = "application/x-ndjson") =>
  fetch(`${server.url}/api/iot/logs`, { method: "POST", headers: { authorization: `Bearer ${device.token}`, "content-type": contentType }, body });

async function readLogs(server: TestServer, device: Device, query: Record<string, string> = {}): Promise<Page> {
  const response = await server.admin("GET", `/api/devices/${device.id}/logs?${new URLSearchParams(query)}`);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as Page;
}

const messages = (page: Page) => page.logs.map((line) => line.message);

/** A publisher like the deployed firmware: MQTT 5, QoS 1. */
async function publisher() {
  return mqtt.connectAsync(MQTT_TEST_URL, { protocolVersion: 5, clientId: `test-device-${unique()}` });
}

describe("device logs", () => {
  let server: TestServer;
  let modelId: number;

  before(async () => {
    server = await startTestServer({
      env: {
        DEVICE_LOG_MQTT: "true",
        DEVICE_LOG_MQTT_CLIENT_ID: `iotsupport-logsink-test-${unique()}`,
        DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS: "60",
        DEVICE_LOG_RATE_LINES_PER_SECOND: "20",
        DEVICE_LOG_MAX_LINES_PER_REQUEST: "200",
        DEVICE_LOG_MAX_REQUEST_BYTES: "65536",
        DEVICE_LOG_MAX_LINE_BYTES: "512",
        DEVICE_LOG_MAX_LINES_PER_DEVICE: "100",
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      },
    });
    modelId = await createModel(server);
  });
  after(() => server?.close());

  test("the deployed firmware's payload on iotsupport/logsink: ANSI stripped, matched by entity_id, other fields kept", async () => {
    const device = await createDevice(server, modelId);
    const other = await createDevice(server, modelId);
    const client = await publisher();
    try {
      // The firmware batches lines: one JSON object per line, with the entity id from its config.
      const payload = [
        { message: "\u001b[0;32mI (1234) wifi: connected\u001b[0m\n", entity_id: device.entity, relative_time: 1234 },
        { message: "\u001b[0;33mW (1240) app: low heap\u001b[0m", entity_id: device.entity },
        { message: "I (1300) other: not mine", entity_id: other.entity },
        { message: "nobody's", entity_id: "sensor.unknown" },
      ]
        .map((line) => JSON.stringify(line))
        .join("\n");
      await client.publishAsync("iotsupport/logsink", payload, { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const page = await waitFor("the lines to be readable", async () => {
      const read = await readLogs(server, device);
      return read.logs.length === 2 ? read : undefined;
    });
    assert.deepEqual(messages(page), ["I (1234) wifi: connected", "W (1240) app: low heap"]);
    assert.equal(page.has_more, false);
    for (const line of page.logs) assert.match(line.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(page.window_end, new Date(Date.parse(page.logs[1]!.timestamp) + 1).toISOString());
    assert.deepEqual(messages(await readLogs(server, other)), ["I (1300) other: not mine"]);
    const rejected = await server.services.metrics.registry.getSingleMetric("iot_device_log_lines_rejected_total")!.get();
    assert.ok(rejected.values.some((v) => v.labels.reason === "unknown_entity" && v.value >= 1));
  });

  test("a device's own topic iotsupport/<client_id>/logs: the topic names the device", async () => {
    const device = await createDevice(server, modelId);
    const client = await publisher();
    try {
      await client.publishAsync(`iotsupport/${device.client_id}/logs`, JSON.stringify({ message: "from my own topic", entity_id: "ignored" }), { qos: 1 });
    } finally {
      await client.endAsync();
    }
    const page = await waitFor("the line", async () => ((await readLogs(server, device)).logs.length > 0 ? readLogs(server, device) : undefined));
    assert.deepEqual(messages(page), ["from my own topic"]);
  });

  test("POST /iot/logs with bad lines among good ones stores the good ones and counts the bad", async () => {
    const device = await createDevice(server, modelId);
    const body = [
      JSON.stringify({ message: "first good", level: "I" }),
      "this is not json",
      JSON.stringify({ msg: "no message field" }),
      JSON.stringify({ message: "x".repeat(600) }),
      "",
      JSON.stringify({ message: "second good\u0000 with a NUL", weird: "\ud800" }),
      "[1,2",
    ].join("\n");
    const response = await postLogs(server, device, body);
    assert.equal(response.status, 202, await response.clone().text());
    assert.deepEqual(await response.json(), { accepted: 2, rejected: 4 });
    await server.services.deviceLogs.flush();
    assert.deepEqual(messages(await readLogs(server, device)), ["first good", "second good with a NUL"]);

    const array = await postLogs(server, device, JSON.stringify([{ message: "from an array" }, 42]), "application/json");
    assert.deepEqual(await array.json(), { accepted: 1, rejected: 1 });
  });

  test("POST /iot/logs limits: 413 by size and by lines, 415 by type, 429 with Retry-After by rate, 401 without a token", async () => {
    const device = await createDevice(server, modelId);
    const line = JSON.stringify({ message: "y".repeat(400) });
    await assertErrorEnvelope(await postLogs(server, device, Array(200).fill(line).join("\n")), 413, "too big");
    const tooMany = await postLogs(server, device, Array(201).fill(JSON.stringify({ message: "m" })).join("\n"));
    assert.equal((await assertErrorEnvelope(tooMany, 413, "too many lines")).code, "TOO_MANY_LINES");
    assert.equal((await assertErrorEnvelope(await postLogs(server, device, "{}", "application/xml"), 415, "type")).code, "UNSUPPORTED_MEDIA_TYPE");
    // 20 lines/s with bursts of 10 s: 200 lines pass, the next are refused until the bucket refills.
    assert.equal((await postLogs(server, device, Array(200).fill(JSON.stringify({ message: "burst" })).join("\n"))).status, 202);
    const limited = await postLogs(server, device, Array(50).fill(JSON.stringify({ message: "over" })).join("\n"));
    assert.equal((await assertErrorEnvelope(limited, 429, "rate")).code, "RATE_LIMITED");
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    const anonymous = await fetch(`${server.url}/iot/logs`, { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: "{}" });
    await assertErrorEnvelope(anonymous, 401, "no token");
  });

  test("GET logs: bad datetimes are a 400 envelope, an unknown device 404, a device without lines an empty list", async () => {
    const device = await createDevice(server, modelId);
    const bad = await server.admin("GET", `/api/devices/${device.id}/logs?start=yesterday`);
    assert.equal((await assertErrorEnvelope(bad, 400, "bad start")).code, "VALIDATION_FAILED");
    const reversed = await server.admin("GET", `/api/devices/${device.id}/logs?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z`);
    await assertErrorEnvelope(reversed, 400, "start after end");
    await assertErrorEnvelope(await server.admin("GET", "/api/devices/999999/logs"), 404, "unknown device");
    const empty = await readLogs(server, device);
    assert.deepEqual(empty.logs, []);
    assert.equal(empty.has_more, false);
    assert.ok(Math.abs(Date.parse(empty.window_end) - Date.now()) < 5_000);
    assert.ok(Math.abs(Date.parse(empty.window_end) - Date.parse(empty.window_start) - 3_600_000) < 5_000);
  });

  test("query filters case-insensitively, `*` matches any run, and LIKE's own characters are literal", async () => {
    const device = await createDevice(server, modelId);
    const lines = ["E (1) wifi: Disconnected", "I (2) wifi: connected", "I (3) app: 100% done", "I (4) app: 100 items"];
    await postLogs(server, device, lines.map((message) => JSON.stringify({ message })).join("\n"));
    await server.services.deviceLogs.flush();
    assert.deepEqual(messages(await readLogs(server, device, { query: "DISCONN" })), ["E (1) wifi: Disconnected"]);
    assert.deepEqual(messages(await readLogs(server, device, { query: "wifi*connected" })), ["E (1) wifi: Disconnected", "I (2) wifi: connected"]);
    assert.deepEqual(messages(await readLogs(server, device, { query: "100%" })), ["I (3) app: 100% done"]);
  });

  test("the web UI's polling (start = previous window_end) neither repeats nor skips a line while the device keeps printing", async () => {
    const device = await createDevice(server, modelId);
    const client = await publisher();
    const sent: string[] = [];
    const seen: string[] = [];
    let start = new Date(Date.now() - 1000).toISOString();
    const poll = async () => {
      const page = await readLogs(server, device, { start, limit: "7" });
      seen.push(...messages(page));
      assert.ok(page.window_end >= start, "window_end never goes back");
      start = page.window_end;
      return page;
    };
    try {
      for (let batch = 0; batch < 30; batch++) {
        const lines = Array.from({ length: 1 + (batch % 4) * 3 }, (_, i) => `line ${batch}.${i}`);
        sent.push(...lines);
        const payload = lines.map((message) => JSON.stringify({ message, entity_id: device.entity })).join("\n");
        // HTTP and MQTT alternate: both land in the same stream of lines.
        if (batch % 2 === 0) await client.publishAsync("iotsupport/logsink", payload, { qos: 1 });
        else assert.equal((await postLogs(server, device, lines.map((message) => JSON.stringify({ message })).join("\n"))).status, 202);
        await poll();
      }
    } finally {
      await client.endAsync();
    }
    await waitFor("every line to be polled", async () => {
      await poll();
      return seen.length >= sent.length;
    });
    // Lines of one batch keep their order; batches sent over two paths may interleave only by arrival, never repeat.
    assert.equal(seen.length, sent.length);
    assert.deepEqual([...seen].sort(), [...sent].sort());
    assert.equal(new Set(seen).size, seen.length);
  });

  test("retention: whole days older than DEVICE_LOG_RETENTION_DAYS are dropped, and a device over its size loses its oldest lines", async () => {
    const big = await createDevice(server, modelId);
    const small = await createDevice(server, modelId);
    for (let chunk = 0; chunk < 3; chunk++) {
      const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ message: `big ${String(chunk * 50 + i).padStart(3, "0")}` }));
      assert.equal((await postLogs(server, big, lines.join("\n"))).status, 202);
    }
    await postLogs(server, small, Array.from({ length: 20 }, (_, i) => JSON.stringify({ message: `small ${i}` })).join("\n"));
    await server.services.deviceLogs.flush();

    const summary = await server.services.deviceLogs.runRetention();
    assert.ok(summary.lines_trimmed >= 50, JSON.stringify(summary));
    const kept = messages(await readLogs(server, big, { limit: "1000" }));
    assert.equal(kept.length, 100);
    assert.equal(kept[0], "big 050");
    assert.equal(kept.at(-1), "big 149");
    assert.equal((await readLogs(server, small)).logs.length, 20);

    // Seven days on, today is still kept; eight days on, it is gone.
    const start = new Date(Date.now() - 60_000).toISOString();
    await server.services.deviceLogs.runRetention(new Date(Date.now() + 7 * DAY_MS));
    assert.equal((await readLogs(server, small, { start })).logs.length, 20);
    const later = await server.services.deviceLogs.runRetention(new Date(Date.now() + 8 * DAY_MS));
    assert.ok(later.days_dropped >= 1);
    assert.equal((await readLogs(server, small, { start })).logs.length, 0);
    // Lines after retention went on land in a new day partition.
    await postLogs(server, small, JSON.stringify({ message: "after retention" }));
    await server.services.deviceLogs.flush();
    assert.deepEqual(messages(await readLogs(server, small)), ["after retention"]);
  });

  test("the CronJob's `retention-job` command applies the same retention and prints what it did", async () => {
    const device = await createDevice(server, modelId);
    await postLogs(server, device, Array.from({ length: 150 }, (_, i) => JSON.stringify({ message: `cron ${i}` })).join("\n"));
    await server.services.deviceLogs.flush();
    const job = runEntry("cli.ts", ["retention-job"], { cwd: server.env.DATA_DIR!, env: bareEnv({ ...server.env, LOG_LEVEL: "warn" }) });
    assert.equal(await job.exited(60_000), 0, job.stderr());
    const printed = JSON.parse(job.stdout()) as { retention_job: { device_logs: { lines_trimmed: number } } };
    assert.ok(printed.retention_job.device_logs.lines_trimmed >= 50);
    assert.equal((await readLogs(server, device, { limit: "1000" })).logs.length, 100);
  });
});

describe("device logs through a database outage", () => {
  let server: TestServer;
  let proxy: DatabaseProxy;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;

  before(async () => {
    database = await createTestDatabase();
    proxy = await startDatabaseProxy(database.url);
    server = await startTestServer({
      databaseUrl: proxy.url,
      env: { DEVICE_LOG_MQTT: "true", DEVICE_LOG_MQTT_CLIENT_ID: `iotsupport-logsink-test-${unique()}`, DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS: "120", DEVICE_LOG_BUFFER_LINES: "100" },
    });
  });
  after(async () => {
    await proxy?.heal();
    await server?.close();
    await proxy?.close();
    await database?.drop();
  });

  test("lines published while PostgreSQL is down are all stored once it is back (the buffer fills, the broker queues the rest)", async () => {
    const device = await createDevice(server, await createModel(server));
    const client = await publisher();
    // One line before the outage, so the sink knows the device and the outage is met by the buffer, not the lookup.
    const sent = ["before the outage"];
    await client.publishAsync("iotsupport/logsink", JSON.stringify({ message: sent[0], entity_id: device.entity }), { qos: 1 });
    await waitFor("the first line", async () => (await readLogs(server, device)).logs.length === 1);
    await proxy.refuse();
    try {
      // 30 messages of 10 lines: three times what the buffer holds.
      for (let m = 0; m < 30; m++) {
        const lines = Array.from({ length: 10 }, (_, i) => `outage ${m * 10 + i}`);
        sent.push(...lines);
        await client.publishAsync("iotsupport/logsink", lines.map((message) => JSON.stringify({ message, entity_id: device.entity })).join("\n"), { qos: 1 });
      }
    } finally {
      await client.endAsync();
    }
    await waitFor("the buffer to fill", async () => (await server.services.metrics.registry.getSingleMetric("iot_device_log_buffer_lines")!.get()).values[0]!.value >= 100);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await proxy.heal();
    const page = await waitFor(
      "every line to be stored",
      async () => {
        const read = await readLogs(server, device, { limit: "1000" });
        return read.logs.length >= sent.length ? read : undefined;
      },
      60_000,
      250,
    );
    assert.deepEqual(messages(page), sent);
    const dropped = (await server.services.metrics.registry.getSingleMetric("iot_device_log_lines_dropped_total")!.get()).values;
    assert.equal(dropped.reduce((sum, v) => sum + v.value, 0), 0);
  });
});

describe("device logs with two replicas", () => {
  let a: TestServer;
  let b: TestServer;
  const env = { DEVICE_LOG_MQTT: "true", DEVICE_LOG_MQTT_CLIENT_ID: `iotsupport-logsink-test-${unique()}`, DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS: "120" };

  before(async () => {
    a = await startTestServer({ env });
    b = await startTestServer({ databaseUrl: a.databaseUrl, env });
  });
  after(async () => {
    await b?.stop();
    await a?.close();
  });

  test("one replica holds the subscriber's session; when it stops the other takes over and nothing is lost or stored twice", async () => {
    const device = await createDevice(a, await createModel(a));
    const client = await publisher();
    const sent: string[] = [];
    const publish = async (label: string) => {
      const lines = Array.from({ length: 5 }, (_, i) => `${label} ${i}`);
      sent.push(...lines);
      await client.publishAsync("iotsupport/logsink", lines.map((message) => JSON.stringify({ message, entity_id: device.entity })).join("\n"), { qos: 1 });
    };
    const stored = async () => messages(await readLogs(b, device, { limit: "1000" }));
    try {
      await publish("both up");
      await waitFor("the first lines", async () => (await stored()).length === 5);
      await a.stop();
      await b.stop();
      // Neither runs now: the broker queues for the session.
      await publish("none up");
      b = await startTestServer({ databaseUrl: a.databaseUrl, env });
      await publish("one up");
      await waitFor("every line", async () => (await stored()).length >= sent.length, 40_000, 250);
      assert.deepEqual(await stored(), sent);
    } finally {
      await client.endAsync();
    }
  });
});

describe("device logs through a broker restart", () => {
  // A broker of this test's own (the machine's Mosquitto is shared), with persistence as a production broker has it.
  let broker: ChildProcess | null = null;
  let server: TestServer;
  const dir = mkdtempSync(join(tmpdir(), "iot-mosquitto-"));
  let port = 0;

  const startBroker = async () => {
    // Mosquitto started as root drops to its own user, which must be able to write its database here.
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, "mosquitto.conf"), `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\n`);
    broker = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], { stdio: "ignore" });
    await waitFor("the broker", async () => {
      try {
        const probe = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 500 });
        await probe.endAsync();
        return true;
      } catch {
        return false;
      }
    });
  };
  const stopBroker = async () => {
    const exited = new Promise((resolve) => broker!.once("exit", resolve));
    broker!.kill("SIGTERM");
    await exited;
  };

  before(async () => {
    port = await freePort();
    await startBroker();
    server = await startTestServer({
      env: { MQTT_URL: `mqtt://127.0.0.1:${port}`, DEVICE_LOG_MQTT: "true", DEVICE_LOG_MQTT_CLIENT_ID: `iotsupport-logsink-test-${unique()}`, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent" },
    });
  });
  after(async () => {
    await server?.close();
    if (broker && broker.exitCode === null) await stopBroker();
    rmSync(dir, { recursive: true, force: true });
  });

  test("lines published before and after a broker restart are all stored once", async () => {
    const device = await createDevice(server, await createModel(server));
    const sent: string[] = [];
    const publish = async (label: string) => {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5 });
      const lines = Array.from({ length: 5 }, (_, i) => `${label} ${i}`);
      sent.push(...lines);
      await client.publishAsync("iotsupport/logsink", lines.map((message) => JSON.stringify({ message, entity_id: device.entity })).join("\n"), { qos: 1 });
      await client.endAsync();
    };
    const stored = async () => messages(await readLogs(server, device, { limit: "1000" }));
    await waitFor("the subscriber", async () => {
      await publish("before");
      return (await stored()).length > 0;
    });
    await stopBroker();
    await startBroker();
    await publish("after");
    await waitFor("every line", async () => (await stored()).length >= sent.length, 30_000, 250);
    assert.deepEqual(await stored(), sent);
  });
});

describe("device logs through the embedded broker", () => {
  let server: TestServer;
  let url: string;

  before(async () => {
    server = await startTestServer({ env: { MQTT_URL: "", EMBEDDED_MQTT: "true", EMBEDDED_MQTT_HOST: "127.0.0.1", EMBEDDED_MQTT_PORT: "0", DEVICE_LOG_MQTT: "true" } });
    const status = server.services.embeddedBroker!.status;
    url = `mqtt://127.0.0.1:${status.state === "running" ? status.port : 0}`;
  });
  after(() => server?.close());

  test("a device signed in like the deployed firmware publishes to iotsupport/logsink and its own log topic; another device's topic is refused", async () => {
    const device = await createDevice(server, await createModel(server));
    const other = await createDevice(server, await createModel(server));
    // CONTRACT §10: MQTT 5, the access token as username, password "x".
    const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `fw-${unique()}`, username: device.token, password: "x" });
    try {
      await client.publishAsync("iotsupport/logsink", JSON.stringify({ message: "\u001b[0;32mI (1) shared topic\u001b[0m", entity_id: device.entity }), { qos: 1 });
      await client.publishAsync(`iotsupport/${device.client_id}/logs`, JSON.stringify({ message: "own topic" }), { qos: 1 });
      // Refused by the broker's rules: never reaches the subscriber (MQTT 5 answers the PUBACK with an error code).
      await client.publishAsync(`iotsupport/${other.client_id}/logs`, JSON.stringify({ message: "spoofed" }), { qos: 1 }).catch(() => undefined);
    } finally {
      await client.endAsync();
    }
    await waitFor("both lines", async () => (await readLogs(server, device)).logs.length >= 2);
    assert.deepEqual(messages(await readLogs(server, device)), ["I (1) shared topic", "own topic"]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual((await readLogs(server, other)).logs, []);
  });
});
