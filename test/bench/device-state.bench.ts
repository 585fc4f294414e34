/**
 * Device reported state (issue 13 §2, "Measure"): what devices polling with report headers cost the built server,
 * and how fast the fleet view counts a big model.
 *  - 2,000 devices of one model each GET /iot/firmware-version every 10 s (200 requests/s, paced) with
 *    X-Firmware-Version, X-Firmware-Elf-Sha256 and X-Ota-State, for a bit more than a minute after every device was
 *    seen once: the server's CPU µs per request and the row writes per second on `devices` (pg_stat_user_tables);
 *    coalescing must keep them ≤ 1 per device per minute (here ≤ 33/s). Then a closed-loop burst for CPU µs per
 *    request at full speed.
 *  - GET /api/device-models/{id}/fleet over 10,000 devices in mixed states: median and p95 ms (goal < 100 ms).
 * Figures only, no assertions on timing. Kept under ~2 minutes.
 *
 *   npm run build && node --import tsx test/bench/device-state.bench.ts      (PostgreSQL on 127.0.0.1:5432)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { Agent, request } from "node:http";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createTestDatabase } from "../support/database.ts";
import { buildImage } from "../support/firmware-image.ts";
import { freePort } from "../support/server.ts";
import { BENCH_ADMIN_TOKEN, benchServerEnv, cpuMillis, stopProcess, waitUntilListening } from "./processes.ts";
import { isMain, median, percentile, printResultAndExit, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ELF = "cd".repeat(32);

export async function run(options: { pollers?: number; fleetSize?: number; pacedSeconds?: number; burst?: number } = {}): Promise<BenchResult> {
  const { pollers = 2_000, fleetSize = 10_000, pacedSeconds = 70, burst = 10_000 } = options;
  const database = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), "iot-state-bench-"));
  const env = benchServerEnv({ databaseUrl: database.url, dataDir: join(work, "data"), baseUrl: "http://bench.local" });
  const services = await createServices(loadConfig({ ...env, MIGRATE_ON_START: "true" }));
  await services.database.migrate();
  const { db } = services.database;
  let server: ChildProcess | null = null;
  const agent = new Agent({ keepAlive: true, maxSockets: 50 });
  try {
    // Devices are inserted in bulk (the admin API would make each one an OAuth2 client: minutes for 12,000).
    const insertDevices = async (modelId: number, code: string, count: number, from: number) => {
      await db.execute(sql`insert into devices (key, client_id, device_model_id, config)
        select k, 'iotdevice-' || ${code} || '-' || k, ${modelId}, '{}'
        from (select lpad(to_hex(i), 8, '0') as k from generate_series(${from}::int, ${from + count - 1}::int) as i) keys`);
    };
    const polling = await services.models.create({ code: "poll", name: "Polling" }, "test-admin");
    await insertDevices(polling.id, "poll", pollers, 0);
    const clients = (await db.execute(sql`select client_id from devices where device_model_id = ${polling.id} order by id`)) as unknown as { client_id: string }[];
    const tokens = await Promise.all(clients.map(async ({ client_id }) => (await services.builtinIssuer!.issueToken(client_id, 1)).access_token));

    const port = await freePort();
    server = spawn(process.execPath, ["dist/server.js"], { cwd: ROOT, env: { ...process.env, ...env, PORT: String(port) }, stdio: ["ignore", "ignore", "inherit"] });
    const base = `http://127.0.0.1:${port}`;
    await waitUntilListening(`${base}/api/health/live`, server);
    const pid = server.pid!;
    const upload = await fetch(`${base}/api/device-models/${polling.id}/firmware?rollout=immediate`, {
      method: "POST",
      headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: buildImage({ version: "poll-1", size: 64 * 1024, elfSha256: ELF }),
    });
    if (upload.status !== 200) throw new Error(`upload: ${upload.status} ${await upload.text()}`);

    const reportHeaders = { "x-firmware-version": "poll-1", "x-firmware-elf-sha256": ELF, "x-ota-state": "valid" };
    let failures = 0;
    const poll = (device: number) =>
      new Promise<void>((resolve) => {
        const req = request(`${base}/iot/firmware-version`, { agent, headers: { authorization: `Bearer ${tokens[device]}`, ...reportHeaders } }, (res) => {
          if (res.statusCode !== 200) failures++;
          res.resume().on("end", resolve);
        });
        req.on("error", () => {
          failures++;
          resolve();
        });
        req.end();
      });
    const updates = async () => {
      // The server's backends report their counts at most once a second; a fresh snapshot for this session.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await db.execute(sql`select pg_stat_clear_snapshot()`);
      const [row] = (await db.execute(sql`select n_tup_upd::int as n from pg_stat_user_tables where relname = 'devices'`)) as unknown as { n: number }[];
      return row!.n;
    };

    // Every device seen once (its first sighting is a write), then the flushes of that settle.
    for (let start = 0; start < pollers; start += 50) await Promise.all(Array.from({ length: Math.min(50, pollers - start) }, (_, i) => poll(start + i)));
    await new Promise((resolve) => setTimeout(resolve, 6_000));

    // Paced: every device every 10 s, spread evenly (one request every 10 s / pollers).
    const updatesBefore = await updates();
    const cpuBefore = cpuMillis(pid);
    const pacedStarted = performance.now();
    const everyMs = 10_000 / pollers;
    let sent = 0;
    const inFlight = new Set<Promise<void>>();
    while (performance.now() - pacedStarted < pacedSeconds * 1000) {
      const due = Math.floor((performance.now() - pacedStarted) / everyMs);
      for (; sent < due; sent++) {
        const one = poll(sent % pollers);
        inFlight.add(one);
        void one.then(() => inFlight.delete(one));
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await Promise.all(inFlight);
    const pacedSecondsActual = (performance.now() - pacedStarted) / 1000;
    const pacedCpuMs = cpuMillis(pid) - cpuBefore;
    // Flushes run every 5 s: let the last one land before counting.
    await new Promise((resolve) => setTimeout(resolve, 5_500));
    const pacedUpdates = (await updates()) - updatesBefore;

    // Burst: as fast as 50 connections go.
    const burstCpuBefore = cpuMillis(pid);
    const burstStarted = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < burst) await poll(next++ % pollers);
      }),
    );
    const burstSeconds = (performance.now() - burstStarted) / 1000;
    const burstCpuMs = cpuMillis(pid) - burstCpuBefore;

    // The fleet view over 10,000 devices: a third reported, a third inferred (downloaded, seen since), a third
    // unknown; a tenth not seen for two days.
    const fleetModel = await services.models.create({ code: "fleet", name: "Fleet" }, "test-admin");
    for (const version of ["fleet-1", "fleet-2"]) {
      const response = await fetch(`${base}/api/device-models/${fleetModel.id}/firmware?rollout=immediate`, {
        method: "POST",
        headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
        body: buildImage({ version, size: 32 * 1024 }),
      });
      if (response.status !== 200) throw new Error(`upload: ${response.status} ${await response.text()}`);
    }
    await insertDevices(fleetModel.id, "fleet", fleetSize, pollers);
    await db.execute(sql`update devices d set
        reported_firmware_version = case when d.id % 3 = 0 then (case when d.id % 2 = 0 then 'fleet-1' else 'fleet-2' end) end,
        downloaded_version_id = case when d.id % 3 = 1 then (select id from firmware_versions v where v.device_model_id = d.device_model_id and v.version = 'fleet-2') end,
        downloaded_at = case when d.id % 3 = 1 then now() - interval '1 hour' end,
        last_seen_at = case when d.id % 10 = 0 then now() - interval '2 days' else now() - interval '5 minutes' end
      where d.device_model_id = ${fleetModel.id}`);
    await db.execute(sql`analyze devices`);
    const fleetMs: number[] = [];
    let fleetAnswer = "";
    for (let i = 0; i < 25; i++) {
      const started = performance.now();
      const response = await fetch(`${base}/api/device-models/${fleetModel.id}/fleet`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
      fleetAnswer = await response.text();
      if (response.status !== 200) throw new Error(`fleet: ${response.status} ${fleetAnswer}`);
      if (i >= 5) fleetMs.push(performance.now() - started); // five warm-up calls
    }
    const metricsStarted = performance.now();
    const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
    await metrics.text();
    const metricsMs = performance.now() - metricsStarted;

    const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
    return {
      title: `Device state: ${pollers.toLocaleString("en")} devices polling /iot/firmware-version with report headers; fleet view at ${fleetSize.toLocaleString("en")} devices`,
      figures: {
        "paced: requests": sent,
        "paced: requests/s": round(sent / pacedSecondsActual),
        "paced: server CPU µs per request": Math.round((pacedCpuMs * 1000) / sent),
        "paced: devices row writes/s (pg_stat_user_tables n_tup_upd)": round(pacedUpdates / pacedSecondsActual, 2),
        "paced: row writes per device per minute (goal ≤ 1)": round(pacedUpdates / pollers / (pacedSecondsActual / 60), 2),
        "burst: requests": burst,
        "burst: requests/s": Math.round(burst / burstSeconds),
        "burst: server CPU µs per request": Math.round((burstCpuMs * 1000) / burst),
        "failed requests": failures,
        "fleet (10,000 devices): median ms (goal < 100)": round(median(fleetMs)),
        "fleet: p95 ms": round(percentile(fleetMs, 95)),
        "GET /metrics with the fleet gauges (12,000 devices), ms": round(metricsMs),
        "load average (1 min) at the end": round(loadavg()[0]!, 1),
      },
      notes: [
        "Server: `node dist/server.js` in a child process (PostgreSQL, built-in provider, LOG_LEVEL=warn); devices inserted in bulk (no OAuth2 client each), tokens from the built-in issuer.",
        `Paced: each device GETs /iot/firmware-version every 10 s with X-Firmware-Version, X-Firmware-Elf-Sha256 and X-Ota-State (the same values each time), for ${pacedSeconds} s after every device was seen once; node:http client, keep-alive, ≤ 50 connections. CPU: user + system time of the server process per request. Writes: n_tup_upd of devices over the paced window (its last flush included).`,
        `Burst: ${burst} of the same requests over 50 connections as fast as they go.`,
        `Fleet: ${fleetSize} devices of one model with two versions: a third reported (half each version), a third downloaded fleet-2 an hour ago and seen since (inferred), a third unknown; a tenth last seen two days ago. 20 timed calls after 5 warm-up ones. Answer: ${fleetAnswer}`,
      ],
    };
  } finally {
    agent.destroy();
    if (server) await stopProcess(server);
    await services.close();
    await database.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await printResultAndExit(run);
