/**
 * Issue 2 (foundation): listing 10,000 devices, creating devices, and server cold start, all against the built
 * server (`node dist/server.js`) on the real PostgreSQL, plus cold start on PGlite.
 * Targets: listing 10,000 devices < 100 ms median; cold start on PostgreSQL < 1 s.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openPostgres } from "../../db/client.ts";
import { deviceModels, devices } from "../../db/schema.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { deviceClientId, generateDeviceKey } from "../../lib/devices.ts";
import { allPages, MAX_PAGE_LIMIT } from "../../lib/paging.ts";
import { generateFernetKey } from "../../lib/secrets.ts";
import { createTestDatabase } from "../support/database.ts";
import { freePort } from "../support/server.ts";
import { cpuMillis, rssBytes } from "./processes.ts";
import { median, percentile, type BenchResult } from "./report.ts";

const DEVICE_COUNT = 10_000;
const LIST_CALLS = 50;
const SEQUENTIAL_CREATES = 300;
const CONCURRENT_CLIENTS = 8;
const CREATES_PER_CLIENT = 50;
const COLD_STARTS = 5;
const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const serverScript = fileURLToPath(new URL("../../dist/server.js", import.meta.url));

const configSchema = JSON.stringify({
  type: "object",
  properties: { deviceName: { type: "string" }, deviceEntityId: { type: "string" }, enableOTA: { type: "boolean" }, interval: { type: "integer", minimum: 1 } },
  required: ["deviceName"],
});
const deviceConfig = (i: number) =>
  JSON.stringify({ deviceName: `Sensor ${i}`, deviceEntityId: `sensor.room_${i}`, enableOTA: i % 2 === 0, interval: 30, thresholds: { low: 18.5, high: 24 } });

const ms = (value: number) => Math.round(value * 10) / 10;

type RunningServer = { port: number; process: ChildProcess; startMs: number; cpuMs: number; rssMb: number; stop(): Promise<void> };

/** Spawns the built server and times spawn → first 200 on /api/health. */
async function startBuiltServer(env: Record<string, string>): Promise<RunningServer> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [serverScript], {
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", ADMIN_API_TOKEN: ADMIN_TOKEN, ...env, HOST: "127.0.0.1", PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before it was healthy: ${stderr.trim()}`);
    if (performance.now() - started > 120_000) {
      await stop();
      throw new Error(`server not healthy within 120 s: ${stderr.trim()}`);
    }
    try {
      const response = await fetch(`http://127.0.0.1:${port}/api/health`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const startMs = performance.now() - started;
  return { port, process: child, startMs, cpuMs: cpuMillis(child.pid!), rssMb: rssBytes(child.pid!) / 2 ** 20, stop };
}

async function coldStarts(times: number, env: () => Record<string, string>) {
  const samples: number[] = [];
  const cpu: number[] = [];
  let rssMb = 0;
  for (let i = 0; i < times; i++) {
    const server = await startBuiltServer(env());
    samples.push(server.startMs);
    cpu.push(server.cpuMs);
    rssMb = server.rssMb;
    await server.stop();
  }
  return { median: ms(median(samples)), max: ms(Math.max(...samples)), cpuMs: Math.round(median(cpu)), rssMb: Math.round(rssMb) };
}

async function seedDevices(databaseUrl: string): Promise<number> {
  const handle = openPostgres(databaseUrl, { max: 2 });
  try {
    const [model] = await handle.db.insert(deviceModels).values({ code: "bench_sensor", name: "Bench sensor", configSchema }).returning();
    const keys = new Set<string>();
    while (keys.size < DEVICE_COUNT) keys.add(generateDeviceKey());
    const rows = [...keys].map((key, i) => {
      const config = deviceConfig(i);
      return {
        key,
        clientId: deviceClientId(model!.code, key),
        deviceModelId: model!.id,
        config,
        deviceName: `Sensor ${i}`,
        deviceEntityId: `sensor.room_${i}`,
        enableOta: i % 2 === 0,
        secretCreatedAt: new Date(Date.now() - i * 60_000),
        lastRotationCompletedAt: i % 3 === 0 ? new Date() : null,
      };
    });
    for (let i = 0; i < rows.length; i += 1000) await handle.db.insert(devices).values(rows.slice(i, i + 1000));
    return model!.id;
  } finally {
    await handle.close();
  }
}

async function timeListing(port: number) {
  const call = async () => {
    const started = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/api/devices`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`GET /api/devices: ${response.status} ${body.slice(0, 200)}`);
    return { ms: performance.now() - started, body };
  };
  for (let i = 0; i < 5; i++) await call();
  const samples: number[] = [];
  let body = "";
  for (let i = 0; i < LIST_CALLS; i++) ({ ms: samples[i], body } = await call());
  const parsed = JSON.parse(body) as { count: number };
  if (parsed.count < DEVICE_COUNT) throw new Error(`listed ${parsed.count} devices, expected at least ${DEVICE_COUNT}`);
  return { median: ms(median(samples)), p95: ms(percentile(samples, 95)), min: ms(Math.min(...samples)), bytes: Buffer.byteLength(body) };
}

/** Where the listing's time goes, measured in this process: the service call (query + row mapping) and JSON. */
async function listingBreakdown(databaseUrl: string, dataDir: string) {
  const config = loadConfig({ DATABASE_URL: databaseUrl, DATA_DIR: dataDir, LOG_LEVEL: "silent", ADMIN_API_TOKEN: ADMIN_TOKEN });
  const services = await createServices(config);
  try {
    const service: number[] = [];
    const stringify: number[] = [];
    for (let i = 0; i < 25; i++) {
      let started = performance.now();
      const list = [];
      for await (const batch of allPages((after) => services.devices.page({ after, limit: MAX_PAGE_LIMIT }))) list.push(...batch);
      service.push(performance.now() - started);
      started = performance.now();
      JSON.stringify({ devices: list, count: list.length });
      stringify.push(performance.now() - started);
    }
    return { service: ms(median(service.slice(5))), stringify: ms(median(stringify.slice(5))) };
  } finally {
    await services.close();
  }
}

async function timeCreates(port: number, modelId: number) {
  let counter = 0;
  const create = async () => {
    const i = DEVICE_COUNT + ++counter;
    const response = await fetch(`http://127.0.0.1:${port}/api/devices`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ device_model_id: modelId, config: deviceConfig(i) }),
    });
    const body = await response.text();
    if (response.status !== 201) throw new Error(`POST /api/devices: ${response.status} ${body.slice(0, 200)}`);
  };
  for (let i = 0; i < 10; i++) await create();

  let started = performance.now();
  for (let i = 0; i < SEQUENTIAL_CREATES; i++) await create();
  const sequential = SEQUENTIAL_CREATES / ((performance.now() - started) / 1000);

  started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT_CLIENTS }, async () => {
      for (let i = 0; i < CREATES_PER_CLIENT; i++) await create();
    }),
  );
  const concurrent = (CONCURRENT_CLIENTS * CREATES_PER_CLIENT) / ((performance.now() - started) / 1000);
  return { sequential: Math.round(sequential), concurrent: Math.round(concurrent) };
}

export async function run(): Promise<BenchResult> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-bench-"));
  const postgresEnv = () => ({
    NODE_ENV: "production",
    DATABASE_URL: database.url,
    DATA_DIR: dataDir,
    SECRET_ENCRYPTION_KEY: generateFernetKey(),
  });
  try {
    // A migrated database: the first start migrates (MIGRATE_ON_START), the timed starts do not.
    const migrating = await startBuiltServer({ ...postgresEnv(), MIGRATE_ON_START: "true" });
    await migrating.stop();

    const postgresStart = await coldStarts(COLD_STARTS, postgresEnv);
    const pgliteFreshDirs: string[] = [];
    const pgliteFresh = await coldStarts(2, () => {
      const dir = mkdtempSync(join(tmpdir(), "iot-bench-pglite-"));
      pgliteFreshDirs.push(dir);
      return { DATA_DIR: dir };
    });
    const pgliteExisting = await coldStarts(3, () => ({ DATA_DIR: pgliteFreshDirs[0]! }));
    for (const dir of pgliteFreshDirs) rmSync(dir, { recursive: true, force: true });

    const seedStarted = performance.now();
    const modelId = await seedDevices(database.url);
    const seedSeconds = (performance.now() - seedStarted) / 1000;

    const server = await startBuiltServer(postgresEnv());
    let listing, creates;
    try {
      listing = await timeListing(server.port);
      creates = await timeCreates(server.port, modelId);
    } finally {
      await server.stop();
    }
    const breakdown = await listingBreakdown(database.url, dataDir);

    return {
      title: "Foundation: device listing, device creation, cold start",
      figures: {
        "GET /api/devices, 10,000 devices: median (ms)": listing.median,
        "GET /api/devices, 10,000 devices: p95 (ms)": listing.p95,
        "GET /api/devices, 10,000 devices: min (ms)": listing.min,
        "GET /api/devices response size (KiB)": Math.round(listing.bytes / 1024),
        "  of which the devices' pages (queries + mapping), median (ms)": breakdown.service,
        "  of which JSON.stringify, median (ms)": breakdown.stringify,
        "POST /api/devices sequential (devices/s)": creates.sequential,
        [`POST /api/devices, ${CONCURRENT_CLIENTS} concurrent clients (devices/s)`]: creates.concurrent,
        "cold start, PostgreSQL (migrated): median (ms)": postgresStart.median,
        "cold start, PostgreSQL (migrated): max (ms)": postgresStart.max,
        "cold start, PostgreSQL: CPU time until healthy, median (ms)": postgresStart.cpuMs,
        "RSS after start, PostgreSQL (MiB)": postgresStart.rssMb,
        "cold start, PGlite fresh data dir: median (ms)": pgliteFresh.median,
        "cold start, PGlite existing data dir: median (ms)": pgliteExisting.median,
        "cold start, PGlite existing data dir: CPU time until healthy, median (ms)": pgliteExisting.cpuMs,
        "RSS after start, PGlite (MiB)": pgliteExisting.rssMb,
        "seeding 10,000 devices with drizzle (s)": ms(seedSeconds),
      },
      notes: [
        `Listing: ${LIST_CALLS} calls after 5 warm-up calls, through \`node dist/server.js\` listening on 127.0.0.1 (client in another process); target < 100 ms median.`,
        `Creation: built-in identity provider; ${SEQUENTIAL_CREATES} sequential, then ${CONCURRENT_CLIENTS} clients × ${CREATES_PER_CLIENT}; each device validates its config against a JSON Schema and creates its OAuth2 client.`,
        `Cold start: spawn → first 200 on /api/health, ${COLD_STARTS} runs on PostgreSQL (NODE_ENV=production, already migrated; target < 1 s), 2 on a fresh PGlite data dir (includes creating the database and migrating), 3 on the existing one.`,
      ],
    };
  } finally {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
