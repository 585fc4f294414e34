/**
 * Issue 16 §2: 100,000 devices. Against the built server (`node dist/server.js`) on the real PostgreSQL and Mosquitto:
 * a page of the device list (by cursor, filtered, searched), the whole list streamed (with the server's RSS growth
 * while it is sent), the rotation dashboard (whole, and a page of a group), status and trigger, a model's fleet view, and `rotation-job` when
 * nothing is due. Targets: page < 20 ms, streamed list RSS growth < 100 MB, dashboard < 200 ms, status < 20 ms,
 * trigger < 2 s, rotation-job < 300 ms. Medians with their range (min–max); no figure is asserted.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { eq, sql } from "drizzle-orm";
import { openPostgres } from "../../db/client.ts";
import { deviceModels, devices, rotationQueue, settings } from "../../db/schema.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createDashboard, type Dashboard } from "../../lib/rotation/dashboard.ts";
import { deviceClientId, generateDeviceKey } from "../../lib/devices.ts";
import { createTestDatabase } from "../support/database.ts";
import { bareEnv, PROJECT_ROOT } from "../support/process.ts";
import { freePort } from "../support/server.ts";
import { BENCH_ADMIN_TOKEN, benchServerEnv, cpuMillis, rssBytes, stopProcess, waitUntilListening } from "./processes.ts";
import { median, percentile, type BenchResult } from "./report.ts";

const DEVICES = 100_000;
const MODELS = 20;
const DAY_MS = 86_400_000;
const ROOMS = ["Kitchen", "Hall", "Office", "Garage", "Bedroom", "Attic", "Cellar", "Porch", "Lab", "Barn"];

const ms = (value: number) => Math.round(value * 10) / 10;
/** "median (min–max)" of some samples, in ms. */
const spread = (samples: number[]) => `${ms(median(samples))} (${ms(Math.min(...samples))}–${ms(Math.max(...samples))})`;

/** 100,000 devices over 20 models: 2 % TIMEOUT (half of them recent), rotations completed over the last 60 days. */
async function seed(databaseUrl: string) {
  const handle = openPostgres(databaseUrl, { max: 2 });
  try {
    await handle.migrate();
    const models = await handle.db
      .insert(deviceModels)
      .values(Array.from({ length: MODELS }, (_, i) => ({ code: `scale_model_${String(i).padStart(2, "0")}`, name: `Scale model ${i}` })))
      .returning();
    const keys = new Set<string>();
    while (keys.size < DEVICES) keys.add(generateDeviceKey());
    const now = Date.now();
    const rows = [...keys].map((key, i) => {
      const model = models[i % MODELS]!;
      const name = `${ROOMS[i % ROOMS.length]} ${i}`;
      const timedOut = i % 50 === 0;
      return {
        key,
        deviceModelId: model.id,
        clientId: deviceClientId(model.code, key),
        config: JSON.stringify({ deviceName: name, deviceEntityId: `sensor.d${i}`, enableOTA: i % 2 === 0 }),
        deviceName: name,
        deviceEntityId: `sensor.d${i}`,
        enableOta: i % 2 === 0,
        rotationState: timedOut ? ("TIMEOUT" as const) : ("OK" as const),
        // Retried later: a TIMEOUT device is not due while the bench runs.
        nextRetryAt: timedOut ? new Date(now + DAY_MS) : null,
        secretCreatedAt: new Date(now - (i % 60) * DAY_MS),
        lastRotationCompletedAt: i % 100 === 0 ? null : new Date(now - (i % 60) * DAY_MS),
        lastSeenAt: i % 3 === 0 ? null : new Date(now - (i % 48) * 3_600_000),
      };
    });
    for (let i = 0; i < rows.length; i += 2000) await handle.db.insert(devices).values(rows.slice(i, i + 2000));
    // The schedule's baseline is recorded: a rotation-job run finds nothing due.
    await handle.db.insert(settings).values({ key: "rotation.schedule_baseline", value: new Date().toISOString() });
    // As autovacuum leaves a table that has settled: statistics and the visibility map (index-only counts) up to date.
    await handle.db.execute(sql`vacuum analyze devices`);
    return { modelIds: models.map((m) => m.id), keys: [...keys].sort() };
  } finally {
    await handle.close();
  }
}

/** Seconds until the server has rendered every chunk of the dashboard (none left that a reader would render itself). */
async function untilDashboardRendered(dashboard: Dashboard) {
  const started = performance.now();
  while ((await dashboard.stale(new Date())) > 0) {
    if (performance.now() - started > 120_000) throw new Error("the dashboard was not rendered within 2 minutes");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return (performance.now() - started) / 1000;
}

type Server = { url: string; child: ChildProcess };

async function startServer(env: Record<string, string>): Promise<Server> {
  const child = spawn(process.execPath, [`${PROJECT_ROOT}dist/server.js`], { env: bareEnv(env), stdio: ["ignore", "ignore", "inherit"] });
  const url = `http://127.0.0.1:${env.PORT}`;
  await waitUntilListening(`${url}/api/health/live`, child);
  return { url, child };
}

async function call(server: Server, method: string, path: string) {
  const response = await fetch(server.url + path, { method, headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
  const body = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${body.slice(0, 200)}`);
  return body;
}

/** Wall time of `times` calls, one after another, after `warmUp` untimed ones; `path` may change per call. */
async function time(server: Server, method: string, path: (i: number) => string, times: number, warmUp = 3) {
  for (let i = 0; i < warmUp; i++) await call(server, method, path(i));
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    await call(server, method, path(i));
    samples.push(performance.now() - started);
  }
  return samples;
}

/** The whole list, read slowly enough to sample the server's RSS while it is sent; the peak growth over the idle RSS. */
async function streamedList(server: Server) {
  const pid = server.child.pid!;
  global.gc?.();
  const idle = rssBytes(pid);
  let peak = idle;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 10);
  const cpuBefore = cpuMillis(pid);
  const started = performance.now();
  const response = await fetch(`${server.url}/api/devices`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
  let bytes = 0;
  let tail = "";
  for await (const chunk of response.body!) {
    bytes += chunk.byteLength;
    tail = (tail + Buffer.from(chunk).toString("utf8")).slice(-40);
  }
  const wallMs = performance.now() - started;
  clearInterval(sampler);
  peak = Math.max(peak, rssBytes(pid));
  const count = Number(/"count":(\d+)}$/.exec(tail)?.[1]);
  if (count !== DEVICES) throw new Error(`the streamed list counted ${count} devices, expected ${DEVICES}`);
  return { wallMs, growthMb: (peak - idle) / 2 ** 20, idleMb: idle / 2 ** 20, cpuMs: cpuMillis(pid) - cpuBefore, mb: bytes / 2 ** 20 };
}

/** The rotation cycle rotation-job runs, timed in this process: what the job costs beyond starting Node and connecting. */
async function cycleInProcess(env: Record<string, string>) {
  const services = await createServices(loadConfig({ ...env, LOG_LEVEL: "silent", EMBEDDED_MQTT: "false" }));
  try {
    const samples: number[] = [];
    for (let i = 0; i < 12; i++) {
      const started = performance.now();
      const summary = await services.rotation.runCycle();
      await services.rollouts.tick();
      if (summary.started !== null || summary.queued !== 0) throw new Error(`the cycle did work: ${JSON.stringify(summary)}`);
      if (i >= 2) samples.push(performance.now() - started);
    }
    return samples;
  } finally {
    await services.close();
  }
}

export async function run(): Promise<BenchResult> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-bench-scale-"));
  const port = await freePort();
  const env = { ...benchServerEnv({ databaseUrl: database.url, dataDir, baseUrl: `http://127.0.0.1:${port}` }), PORT: String(port), MQTT_URL: "mqtt://127.0.0.1:1883" };
  let server: Server | undefined;
  try {
    const seedStarted = performance.now();
    const { modelIds, keys } = await seed(database.url);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    server = await startServer(env);
    const s = server;
    const handle = openPostgres(database.url, { max: 1 });
    // The server's own rule for a fresh chunk: its threshold, and the same rendering.
    const kept = createDashboard({ db: handle.db, rawTexts: handle.rawTexts, criticalThresholdDays: loadConfig(env).ROTATION_CRITICAL_THRESHOLD_DAYS });
    const renderedSeconds = await untilDashboardRendered(kept);
    const cursorAt = (i: number) => Buffer.from(JSON.stringify({ after: keys[(i * 7919) % DEVICES] })).toString("base64url");

    const page = await time(s, "GET", (i) => `/api/devices?limit=100&cursor=${cursorAt(i)}`, 50);
    const firstPage = await time(s, "GET", () => "/api/devices?limit=100", 30);
    const filteredPage = await time(s, "GET", (i) => `/api/devices?limit=100&model_id=${modelIds[i % MODELS]}&rotation_state=TIMEOUT`, 30);
    const searchCommon = await time(s, "GET", (i) => `/api/devices?limit=100&q=${ROOMS[i % ROOMS.length]}`, 30);
    const searchRare = await time(s, "GET", (i) => `/api/devices?limit=100&q=${encodeURIComponent(`Attic ${1000 + i * 10 + 4}`)}`, 30);
    const streams = [];
    for (let i = 0; i < 3; i++) streams.push(await streamedList(s));
    const status = await time(s, "GET", () => "/api/rotation/status", 50);
    const dashboard = await time(s, "GET", () => "/api/rotation/dashboard", 30);
    const dashboardBytes = Buffer.byteLength(await call(s, "GET", "/api/rotation/dashboard"));
    // The dashboard a group at a time: its first page, and a page starting in the middle of the key order.
    const groupCursor = (group: string) => Buffer.from(JSON.stringify({ after: `${group}:${keys[DEVICES / 2]}` })).toString("base64url");
    const dashboardPages: Record<string, number[]> = {};
    for (const group of ["critical", "healthy"]) {
      dashboardPages[`${group}, first page`] = await time(s, "GET", () => `/api/rotation/dashboard?group=${group}&limit=100`, 30);
      dashboardPages[`${group}, middle page`] = await time(s, "GET", () => `/api/rotation/dashboard?group=${group}&limit=100&cursor=${groupCursor(group)}`, 30);
    }
    const fleet = await time(s, "GET", (i) => `/api/device-models/${modelIds[i % MODELS]}/fleet`, 30);

    const trigger: number[] = [];
    const dashboardAfterTrigger: number[] = [];
    const renderedAfterTrigger: number[] = [];
    const job: number[] = [];
    try {
      // Back to a fleet with nothing due: nothing queued, the device a trigger started OK again.
      const settle = async () => {
        await handle.db.delete(rotationQueue);
        await handle.db.update(devices).set({ rotationState: "OK", rotationStartedAt: null }).where(eq(devices.rotationState, "PENDING"));
      };
      for (let i = 0; i < 5; i++) {
        await settle();
        trigger.push(...(await time(s, "POST", () => "/api/rotation/trigger", 1, 0)));
        // Every device changed: no chunk is fresh until the server has rendered them again.
        dashboardAfterTrigger.push(...(await time(s, "GET", () => "/api/rotation/dashboard", 1, 0)));
        renderedAfterTrigger.push(await untilDashboardRendered(kept));
      }
      await settle();
      for (let i = 0; i < 7; i++) {
        const started = performance.now();
        const result = spawnSync(process.execPath, [`${PROJECT_ROOT}dist/cli.js`, "rotation-job"], { env: bareEnv({ ...env, MQTT_URL: "" }), encoding: "utf8" });
        if (result.status !== 0) throw new Error(`rotation-job failed: ${result.stderr}`);
        if (!/"started":\s*null/.test(result.stdout)) throw new Error(`rotation-job did work: ${result.stdout}`);
        job.push(performance.now() - started);
      }
    } finally {
      await handle.close();
    }
    const cycle = await cycleInProcess({ ...env, MQTT_URL: "" });

    return {
      title: `Scale: ${DEVICES.toLocaleString("en")} devices`,
      figures: {
        "seeding (s)": ms(seedSeconds),
        "GET /api/devices?limit=100&cursor=… (page anywhere in the list), median (min–max) ms": spread(page),
        "  the same, p95 (ms)": ms(percentile(page, 95)),
        "GET /api/devices?limit=100 (first page), median (min–max) ms": spread(firstPage),
        "GET /api/devices?limit=100&model_id=…&rotation_state=TIMEOUT, median (min–max) ms": spread(filteredPage),
        "GET /api/devices?limit=100&q=<room> (common word), median (min–max) ms": spread(searchCommon),
        "GET /api/devices?limit=100&q=<one device's name> (rare), median (min–max) ms": spread(searchRare),
        "GET /api/devices (all, streamed): wall time, median (min–max) ms": spread(streams.map((r) => r.wallMs)),
        "  its size (MiB)": ms(streams[0]!.mb),
        "  server RSS growth while sending, median (min–max) MB": spread(streams.map((r) => r.growthMb)),
        "  server RSS before (MiB)": Math.round(streams[0]!.idleMb),
        "  server CPU, median (ms)": ms(median(streams.map((r) => r.cpuMs))),
        "GET /api/rotation/status, median (min–max) ms": spread(status),
        "every dashboard chunk rendered, from the server's start (s)": ms(renderedSeconds),
        "GET /api/rotation/dashboard (whole, its chunks rendered), median (min–max) ms": spread(dashboard),
        "  its size (KiB)": Math.round(dashboardBytes / 1024),
        "GET /api/rotation/dashboard right after a trigger (no chunk fresh), median (min–max) ms": spread(dashboardAfterTrigger),
        "  every chunk rendered again from then on, median (min–max) ms": spread(renderedAfterTrigger.map((seconds) => seconds * 1000)),
        ...Object.fromEntries(
          Object.entries(dashboardPages).map(([which, samples]) => [`GET /api/rotation/dashboard?group=…&limit=100 (${which}), median (min–max) ms`, spread(samples)]),
        ),
        "GET /api/device-models/{id}/fleet (5,000 devices), median (min–max) ms": spread(fleet),
        "POST /api/rotation/trigger (queues ~98,000), median (min–max) ms": spread(trigger),
        "rotation-job, nothing due: process start to exit, median (min–max) ms": spread(job),
        "  its cycle alone (the same work in a running process), median (min–max) ms": spread(cycle),
      },
      notes: [
        `${DEVICES.toLocaleString("en")} devices over ${MODELS} models (2 % TIMEOUT, not due for retry), through \`node dist/server.js\` on PostgreSQL with Mosquitto; requests one after another from another process.`,
        "The whole dashboard: 30 requests once the server has rendered every chunk (lib/rotation/dashboard.ts), and one right after each trigger, when none is fresh and each is rendered from the devices as it is read.",
        "Pages: 50 cursors spread over the whole list, 30 of each other kind, after 3 warm-up calls. Streamed list: 3 rounds; RSS sampled every 10 ms while it is read.",
        "Trigger: 5 rounds, the queue emptied before each (one device then becomes PENDING and is notified). rotation-job: 7 runs of `node dist/cli.js rotation-job` with the schedule's baseline recorded and nothing QUEUED, PENDING or due; then 10 of the same cycle (rotation and rollouts) in this process, after 2 warm-up runs.",
        "Targets (issue 16): page < 20 ms, streamed list RSS growth < 100 MB, dashboard < 200 ms, status < 20 ms, trigger < 2 s, rotation-job < 300 ms.",
      ],
    };
  } finally {
    if (server) await stopProcess(server.child);
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await run();
  console.log(result.title);
  for (const [name, value] of Object.entries(result.figures)) console.log(`  ${name}: ${value}`);
  process.exit(0);
}
