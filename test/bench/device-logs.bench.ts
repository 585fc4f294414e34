/**
 * Device logs (issue 15, "Tests and figures") on the built server, PostgreSQL and Mosquitto:
 *  - MQTT, paced like the issue's fleet: 200 devices × 20 lines/s (each device one NDJSON payload of 20 lines a
 *    second, as the firmware batches), for `pacedSeconds`: server CPU µs per line, and whether it kept up;
 *  - MQTT and HTTP as fast as they go (closed loop): sustained lines/s (median, min and max of 2-second windows) and CPU
 *    µs per line;
 *  - the database's size per million stored lines (the day partitions with their index; the live-event copies apart);
 *  - GET /api/devices/{id}/logs for one device's last hour with `queryRows` synthetic rows stored: median, p95, max ms;
 *  - RSS of the server with 100 SSE clients connected to GET /api/events.
 * Figures only, no assertions on timing.
 *
 *   npm run build && node --import tsx test/bench/device-logs.bench.ts      (PostgreSQL on :5432, Mosquitto on :1883)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import mqtt from "mqtt";
import { openPostgres } from "../../db/client.ts";
import { loadConfig } from "../../lib/config.ts";
import { createLogStore } from "../../lib/device-logs/store.ts";
import { createServices } from "../../lib/context.ts";
import { createTestDatabase } from "../support/database.ts";
import { freePort, MQTT_TEST_URL } from "../support/server.ts";
import { BENCH_ADMIN_TOKEN, benchServerEnv, cpuMillis, rssBytes, stopProcess, waitUntilListening } from "./processes.ts";
import { isMain, median, percentile, printResultAndExit, spread, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DEVICES = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A line as ESP-IDF prints it, colours included, with the firmware's relative_time. */
const logLine = (entity: string, n: number) =>
  JSON.stringify({
    message: `\u001b[0;32mI (${1000 + n}) wifi: sta connected to AP, rssi ${-40 - (n % 40)} dBm, heap ${180000 - (n % 5000)}\u001b[0m`,
    entity_id: entity,
    relative_time: 1000 + n,
  });

export async function run(options: { pacedSeconds?: number; maxSeconds?: number; queryRows?: number } = {}): Promise<BenchResult> {
  // BENCH_LOG_QUERY_ROWS=50000000 for the issue's 50 million (about 9 GB and many minutes of inserts).
  const { pacedSeconds = 30, maxSeconds = 16, queryRows = Number(process.env.BENCH_LOG_QUERY_ROWS ?? 4_000_000) } = options;
  const database = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), "iot-logs-bench-"));
  const env = {
    ...benchServerEnv({ databaseUrl: database.url, dataDir: join(work, "data"), baseUrl: "http://bench.local" }),
    MQTT_URL: MQTT_TEST_URL,
    EMBEDDED_MQTT: "false",
    DEVICE_LOG_MQTT: "true",
    DEVICE_LOG_MQTT_CLIENT_ID: `iotsupport-logsink-bench-${randomBytes(3).toString("hex")}`,
    DEVICE_LOG_MQTT_SESSION_EXPIRY_SECONDS: "60",
    DEVICE_LOG_RATE_LINES_PER_SECOND: "1000000",
    RETENTION_SCHEDULER: "external",
  };
  const services = await createServices(loadConfig({ ...env, MIGRATE_ON_START: "true", DEVICE_LOG_MQTT: "false" }), { processName: "cli" });
  await services.database.migrate();
  const { db } = services.database;
  const rows = async <T>(query: ReturnType<typeof sql>) => (await db.execute(query)) as unknown as T[];
  let server: ChildProcess | null = null;
  const publishers: mqtt.MqttClient[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const sse: ReturnType<typeof request>[] = [];
  try {
    const model = await services.models.create({ code: "logger", name: "Logger" }, "test-admin");
    await db.execute(sql`insert into devices (key, client_id, device_model_id, config, device_entity_id)
      select k, 'iotdevice-logger-' || k, ${model.id}, '{}', 'sensor.' || k
      from (select lpad(to_hex(i), 8, '0') as k from generate_series(1, ${DEVICES}) as i) keys`);
    const fleet = await rows<{ id: number; client_id: string; entity: string }>(sql`select id, client_id, device_entity_id as entity from devices order by id`);
    const tokens = await Promise.all(fleet.map(async ({ client_id }) => (await services.builtinIssuer!.issueToken(client_id, 1)).access_token));

    const port = await freePort();
    server = spawn(process.execPath, ["dist/server.js"], { cwd: ROOT, env: { ...process.env, ...env, PORT: String(port) }, stdio: ["ignore", "ignore", "inherit"] });
    const base = `http://127.0.0.1:${port}`;
    await waitUntilListening(`${base}/api/health/live`, server);
    const pid = server.pid!;
    const written = async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return Number(/^iot_device_log_lines_written_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    await sleep(1000); // the log subscriber's session

    for (let i = 0; i < 4; i++) publishers.push(await mqtt.connectAsync(MQTT_TEST_URL, { protocolVersion: 5, clientId: `bench-pub-${i}-${randomBytes(3).toString("hex")}` }));
    let counter = 0;
    const payload = (device: (typeof fleet)[number], lines: number) => Array.from({ length: lines }, () => logLine(device.entity, counter++)).join("\n");

    /** Waits until the server stored `target` lines (or 60 s passed); answers when, in ms after `since`. */
    const drained = async (target: number, since: number) => {
      for (let i = 0; i < 600 && (await written()) < target; i++) await sleep(100);
      return performance.now() - since;
    };

    // 1. Paced: 200 devices × 20 lines/s, each device once a second.
    const pacedStartLines = await written();
    const pacedCpu = cpuMillis(pid);
    const pacedStart = performance.now();
    let pacedSent = 0;
    for (let second = 0; second < pacedSeconds; second++) {
      const tick = performance.now();
      await Promise.all(
        fleet.map((device, i) => {
          pacedSent += 20;
          return publishers[i % publishers.length]!.publishAsync("iotsupport/logsink", payload(device, 20), { qos: 1 });
        }),
      );
      await sleep(Math.max(0, 1000 - (performance.now() - tick)));
    }
    const pacedEnd = performance.now();
    const lagMs = (await drained(pacedStartLines + pacedSent, pacedEnd)) ;
    const pacedLines = (await written()) - pacedStartLines;
    const pacedCpuMs = cpuMillis(pid) - pacedCpu;
    const pacedRate = pacedLines / ((pacedEnd - pacedStart) / 1000);

    /** Closed loop for `seconds`: `send` repeatedly from `concurrency` workers; lines/s per 2-s window and CPU per line. */
    const closedLoop = async (seconds: number, concurrency: number, send: (worker: number) => Promise<unknown>) => {
      const startLines = await written();
      const startCpu = cpuMillis(pid);
      const started = performance.now();
      let stop = false;
      const windows: number[] = [];
      const sampler = (async () => {
        let last = await written();
        while (!stop) {
          await sleep(2000);
          const now = await written();
          windows.push((now - last) / 2);
          last = now;
        }
      })();
      await Promise.all(
        Array.from({ length: concurrency }, async (_, worker) => {
          while (performance.now() - started < seconds * 1000) await send(worker);
        }),
      );
      stop = true;
      await sampler;
      const lines = (await written()) - startLines;
      const cpuMs = cpuMillis(pid) - startCpu;
      return { rate: lines / ((performance.now() - started) / 1000), cpuUsPerLine: (cpuMs * 1000) / Math.max(lines, 1), windows, lines };
    };

    // 2. MQTT as fast as it goes: 20-line payloads, 32 in flight.
    const mqttMax = await closedLoop(maxSeconds, 32, (worker) => publishers[worker % publishers.length]!.publishAsync("iotsupport/logsink", payload(fleet[worker % DEVICES]!, 20), { qos: 1 }));
    await drained(0, performance.now());
    // 3. HTTP as fast as it goes: 100-line NDJSON batches, 16 clients.
    const httpMax = await closedLoop(maxSeconds, 16, async (worker) => {
      const device = fleet[(worker * 7 + counter) % DEVICES]!;
      const body = Array.from({ length: 100 }, () => logLine(device.entity, counter++)).join("\n");
      await new Promise<void>((resolve, reject) => {
        const req = request(`${base}/iot/logs`, { method: "POST", agent, headers: { authorization: `Bearer ${tokens[device.id - fleet[0]!.id]}`, "content-type": "application/x-ndjson" } }, (res) => {
          res.resume();
          res.on("end", () => (res.statusCode === 202 || res.statusCode === 503 ? resolve() : reject(new Error(`POST /iot/logs answered ${res.statusCode}`))));
        });
        req.on("error", reject);
        req.end(body);
      });
    });

    // 4. Size per million lines.
    await sleep(1000);
    const [stored] = await rows<{ lines: number; bytes: number }>(sql`select (select count(*) from device_logs)::bigint as lines,
      (select coalesce(sum(pg_total_relation_size(inhrelid)), 0) from pg_inherits where inhparent = 'device_logs'::regclass)::bigint as bytes`);
    const [eventBytes] = await rows<{ bytes: number }>(sql`select pg_total_relation_size('events')::bigint as bytes`);
    const lines = Number(stored!.lines);
    const mbPerMillion = (Number(stored!.bytes) / lines) * 1e6 / 2 ** 20;
    const eventMbPerMillion = (Number(eventBytes!.bytes) / lines) * 1e6 / 2 ** 20;

    // 5. Query latency with many rows: synthetic lines over the last 3 days for all devices.
    const insertStarted = performance.now();
    // Without the pool's statement timeout; one line a day first, so the store makes the days' partitions.
    const raw = openPostgres(database.url, { max: 1 });
    await createLogStore(raw.db).insert(
      Array.from({ length: 4 }, (_, day) => ({ deviceId: fleet[0]!.id, stampUs: (Date.now() - day * 86_400_000) * 1000, message: "partition", attributes: null })),
    );
    const perStatement = 500_000;
    for (let done = 0; done < queryRows; done += perStatement) {
      const count = Math.min(perStatement, queryRows - done);
      await raw.db.execute(sql`insert into device_logs (device_id, ts, message, attributes)
        select ${fleet[0]!.id} + (i % ${DEVICES}), now() - ((i::double precision / ${queryRows}) * interval '3 days'),
          'I (' || i || ') app: synthetic line number ' || i || ' with some text to look like a log line', '{"relative_time": 1}'::jsonb
        from generate_series(${done}::bigint, ${done + count - 1}::bigint) as i`);
    }
    await raw.db.execute(sql`analyze device_logs`);
    await raw.close();
    const insertSeconds = (performance.now() - insertStarted) / 1000;
    const timeQuery = async (path: string) => {
      const started = performance.now();
      const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
      const body = (await response.json()) as { logs: unknown[] };
      if (response.status !== 200) throw new Error(`${path}: ${response.status}`);
      return { ms: performance.now() - started, lines: body.logs.length };
    };
    const lastHour: number[] = [];
    const filtered: number[] = [];
    let linesPerAnswer = 0;
    for (let i = 0; i < 60; i++) {
      const device = fleet[(i * 37) % DEVICES]!;
      const answer = await timeQuery(`/api/devices/${device.id}/logs`);
      lastHour.push(answer.ms);
      linesPerAnswer = Math.max(linesPerAnswer, answer.lines);
      filtered.push((await timeQuery(`/api/devices/${device.id}/logs?query=number%20${1000 + i}*text`)).ms);
    }

    // 6. RSS with 100 SSE clients (idle, then while log events flow).
    const rssBefore = rssBytes(pid);
    for (let i = 0; i < 100; i++) {
      const req = request(`${base}/api/events`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } }, (res) => res.resume());
      req.end();
      sse.push(req);
    }
    await sleep(2000);
    for (let second = 0; second < 5; second++) {
      await Promise.all(fleet.map((device, i) => publishers[i % publishers.length]!.publishAsync("iotsupport/logsink", payload(device, 20), { qos: 1 })));
      await sleep(1000);
    }
    const rssWithClients = rssBytes(pid);

    return {
      title: "Device logs: ingest, storage, query, live clients",
      figures: {
        [`MQTT paced ${DEVICES} devices × 20 lines/s: lines/s stored`]: Math.round(pacedRate),
        "MQTT paced: server CPU µs per line": (pacedCpuMs * 1000) / Math.max(pacedLines, 1),
        "MQTT paced: ms from the last publish until all stored": Math.round(lagMs),
        "MQTT closed loop: lines/s over the phase": Math.round(mqttMax.rate),
        "MQTT closed loop: lines/s, median (min–max) of 2-s windows": spread(mqttMax.windows, 0),
        "MQTT closed loop: server CPU µs per line": mqttMax.cpuUsPerLine,
        "HTTP closed loop (100-line batches): lines/s over the phase": Math.round(httpMax.rate),
        "HTTP closed loop: lines/s, median (min–max) of 2-s windows": spread(httpMax.windows, 0),
        "HTTP closed loop: server CPU µs per line (incl. HTTP and token check)": httpMax.cpuUsPerLine,
        "DB size per million lines (partitions + index), MiB": mbPerMillion,
        "live-event copies (events table) per million lines, MiB": eventMbPerMillion,
        "synthetic rows inserted for the query test": queryRows,
        "their insert (SQL generate_series), s": insertSeconds,
        "GET one device's last hour (1000-line page): median ms": median(lastHour),
        "… p95 ms": percentile(lastHour, 95),
        "… max ms": Math.max(...lastHour),
        "GET with query=…*…: median ms": median(filtered),
        "GET with query=…*…: p95 ms": percentile(filtered, 95),
        "server RSS before SSE clients, MiB": rssBefore / 2 ** 20,
        "server RSS with 100 SSE clients while logs flow, MiB": rssWithClients / 2 ** 20,
      },
      notes: [
        `Lines are ESP-IDF-style (~100 characters with colour codes, one attribute); ${lines} stored from the ingest phases.`,
        `The query test stores ${queryRows.toLocaleString("en")} rows (BENCH_LOG_QUERY_ROWS; the issue asks for 50 million); the read is an index range scan of one device's hour, so its cost follows the rows in that hour (here ~${linesPerAnswer} answered per page), not the table's size.`,
        "CPU per line is the server process's user+system time over the lines stored in the phase; the machine is shared, so the spread is wide.",
        "The 2-s windows count lines as batches commit (up to 5,000 lines each), so single windows jump in steps; the phase figure is the mean.",
      ],
    };
  } finally {
    for (const req of sse) req.destroy();
    for (const publisher of publishers) await publisher.endAsync(true);
    agent.destroy();
    if (server) await stopProcess(server);
    await services.close();
    await database.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await printResultAndExit(run);
