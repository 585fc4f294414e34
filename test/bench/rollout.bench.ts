/**
 * Firmware rollouts (issue 13, "Measure"), against the built server (`node dist/server.js`, child process) on a fresh
 * PostgreSQL database and the machine's Mosquitto:
 *  1. 10,000 devices of one model GET /iot/firmware-version every 10 s with X-Firmware-Version (paced at
 *     10,000 / 10 s = 1,000 requests/s, or what the machine holds, over a modest number of connections): the
 *     server's CPU µs per request and the row writes per second on `devices` (pg_stat_user_tables n_tup_upd); the
 *     claim to check is ≤ 1 write per device per minute.
 *  2. Full staged rollouts of 1,000 simulated devices (test/support/firmware-device.ts, which updates like the
 *     deployed firmware), stepped by the server's internal scheduler every second: the MQTT firmware notices the
 *     server publishes on Mosquitto make the devices act (`notified()`). Wall time to completion, peak admitted
 *     devices, peak concurrent full downloads, server RSS.
 *  3. GET /api/device-models/{id}/fleet over the 10,000 polling devices: median and p95 (goal < 100 ms).
 * Figures only, no assertions on timing.
 *
 *   npm run bench -- rollout      (PostgreSQL on 127.0.0.1:5432, Mosquitto on 127.0.0.1:1883)
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
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createTestDatabase } from "../support/database.ts";
import { createFirmwareDevice, type FirmwareDevice } from "../support/firmware-device.ts";
import { buildImage } from "../support/firmware-image.ts";
import { freePort, MQTT_TEST_URL } from "../support/server.ts";
import { BENCH_ADMIN_TOKEN, benchServerEnv, cpuMillis, rssBytes, stopProcess, waitUntilListening } from "./processes.ts";
import { isMain, loadAverage, median, percentile, printResultAndExit, round, spread, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MiB = 1024 * 1024;

type Options = {
  pollers?: number;
  /** Seconds between two requests of one device (the firmware's polling period). */
  pollEverySeconds?: number;
  pacedRounds?: number;
  roundSeconds?: number;
  connections?: number;
  rolloutDevices?: number;
  rollouts?: number;
  imageBytes?: number;
  fleetRounds?: number;
  fleetPerRound?: number;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The peak number of intervals open at once. */
function peakOverlap(intervals: { start: number; end: number }[]): number {
  const edges = intervals.flatMap(({ start, end }) => [
    [start, 1],
    [end, -1],
  ]);
  edges.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let open = 0;
  let peak = 0;
  for (const [, change] of edges) peak = Math.max(peak, (open += change!));
  return peak;
}

/**
 * Records every GET …/iot/firmware the simulated devices make in this process (they use the global fetch): when it
 * started, when its body ended or was cancelled, and whether it was read to the end (a full download) or cancelled
 * after the version block (the boot check of a device that already runs the image).
 */
function recordFirmwareRequests() {
  const original = globalThis.fetch;
  const records: { start: number; end: number; full: boolean }[] = [];
  globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!url.endsWith("/iot/firmware")) return original(input, init);
    const start = performance.now();
    const record = (full: boolean) => records.push({ start, end: performance.now(), full });
    const response = await original(input, init).catch((error) => {
      record(false);
      throw error;
    });
    if (!response.body) {
      record(false);
      return response;
    }
    const reader = response.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) {
          record(true);
          controller.close();
        } else controller.enqueue(value);
      },
      cancel(reason) {
        record(false);
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
  return { records, restore: () => void (globalThis.fetch = original) };
}

export async function run(options: Options = {}): Promise<BenchResult> {
  const {
    pollers = 10_000,
    pollEverySeconds = 10,
    pacedRounds = 12,
    roundSeconds = 10,
    connections = 50,
    rolloutDevices = 1_000,
    rollouts: rolloutRuns = 2,
    imageBytes = 1 * MiB,
    fleetRounds = 4,
    fleetPerRound = 8,
  } = options;
  const database = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), "iot-rollout-bench-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // Built-in identity: tokens minted in this process and by the server's /oauth2/token must name the same issuer.
  const env = {
    ...benchServerEnv({ databaseUrl: database.url, dataDir: join(work, "data"), baseUrl: base }),
    PORT: String(port),
    WIFI_SSID: "bench",
    WIFI_PASSWORD: "bench-wifi-password",
  };
  const serverEnv = { ...env, MQTT_URL: MQTT_TEST_URL, EMBEDDED_MQTT: "false" };
  const services = await createServices(loadConfig({ ...env, EMBEDDED_MQTT: "false", MIGRATE_ON_START: "true" }));
  await services.database.migrate();
  const { db } = services.database;
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const children: ChildProcess[] = [];
  const firmwareRequests = recordFirmwareRequests();
  let subscriber: mqtt.MqttClient | null = null;
  const tag = randomBytes(3).toString("hex");

  const startServer = async (extra: Record<string, string> = {}) => {
    const child = spawn(process.execPath, ["dist/server.js"], { cwd: ROOT, env: { ...process.env, ...serverEnv, ...extra }, stdio: ["ignore", "ignore", "inherit"] });
    children.push(child);
    await waitUntilListening(`${base}/api/health/live`, child);
    return child;
  };
  const admin = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, ...(body !== undefined && { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text);
  };
  const upload = (modelId: number, version: string, bytes: number, query = "") =>
    fetch(`${base}/api/device-models/${modelId}/firmware${query}`, {
      method: "POST",
      headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
      body: buildImage({ version, size: bytes }),
    }).then(async (response) => {
      const text = await response.text();
      if (response.status !== 200) throw new Error(`upload ${version}: ${response.status} ${text}`);
      return JSON.parse(text) as { version_id: number; rollout_id?: number };
    });
  // Devices are inserted in bulk (the admin API would make each one an OAuth2 client: minutes for 11,000).
  const insertDevices = async (modelId: number, code: string, count: number, from: number) => {
    await db.execute(sql`insert into devices (key, client_id, device_model_id, config)
      select k, 'iotdevice-' || ${code} || '-' || k, ${modelId}, '{}'
      from (select lpad(to_hex(i), 8, '0') as k from generate_series(${from}::int, ${from + count - 1}::int) as i) keys`);
    return (await db.execute(sql`select id, client_id from devices where device_model_id = ${modelId} order by id`)) as unknown as { id: number; client_id: string }[];
  };
  const devicesUpdates = async () => {
    // The server's backends report their counts at most once a second; a fresh snapshot for this session.
    await sleep(1_500);
    await db.execute(sql`select pg_stat_clear_snapshot()`);
    const [row] = (await db.execute(sql`select n_tup_upd::int as n from pg_stat_user_tables where relname = 'devices'`)) as unknown as { n: number }[];
    return row!.n;
  };

  try {
    // ---- Setup on a server without a scheduler: both models, their images, the rollout fleet booted once. ----
    const pollModel = await services.models.create({ code: `poll${tag}`, name: "Polling" }, "test-admin");
    const pollClients = await insertDevices(pollModel.id, `poll${tag}`, pollers, 0);
    const tokens = await Promise.all(pollClients.map(async ({ client_id }) => (await services.builtinIssuer!.issueToken(client_id, 1)).access_token));

    const rollModel = await services.models.create({ code: `roll${tag}`, name: "Rollout" }, "test-admin");
    const rollClients = await insertDevices(rollModel.id, `roll${tag}`, rolloutDevices, pollers);
    const secrets: string[] = [];
    for (let start = 0; start < rollClients.length; start += 50) {
      const part = rollClients.slice(start, start + 50);
      secrets.push(...(await Promise.all(part.map(async ({ client_id }) => (await services.identity.createClient(client_id)).secret))));
    }

    let server = await startServer();
    await upload(pollModel.id, "poll-1", 64 * 1024);
    await upload(rollModel.id, "1.0.0", imageBytes);
    // Half the devices report what they run in headers, half say nothing (legacy firmware), as in test/rollouts.test.ts.
    const fleet: FirmwareDevice[] = rollClients.map(({ client_id }, i) =>
      createFirmwareDevice({ baseUrl: base, tokenUrl: services.identity.tokenUrl, clientId: client_id, secret: secrets[i]!, running: "1.0.0", reports: i % 2 === 0 }),
    );
    for (let start = 0; start < fleet.length; start += 25) await Promise.all(fleet.slice(start, start + 25).map((device) => device.boot()));
    // The versions to roll out, uploaded now: a staged upload starts a rollout with the default plan, which is
    // aborted before any scheduler could step it (the bench starts its own plan below).
    const targets: { version: string; id: number }[] = [];
    for (let i = 0; i < rolloutRuns; i++) {
      const version = `${i + 2}.0.0`;
      const uploaded = await upload(rollModel.id, version, imageBytes, "?rollout=staged");
      if (uploaded.rollout_id !== undefined) await admin("POST", `/api/device-models/${rollModel.id}/rollouts/${uploaded.rollout_id}/abort`);
      targets.push({ version, id: uploaded.version_id });
    }

    // ---- 1. Polling. ----
    const pid = server.pid!;
    let failures = 0;
    const latencies: number[] = [];
    const reportHeaders = { "x-firmware-version": "poll-1" };
    const poll = (device: number) =>
      new Promise<void>((resolve) => {
        const started = performance.now();
        const req = request(`${base}/iot/firmware-version`, { agent, headers: { authorization: `Bearer ${tokens[device]}`, ...reportHeaders } }, (res) => {
          if (res.statusCode !== 200) failures++;
          res.resume().on("end", () => {
            latencies.push(performance.now() - started);
            resolve();
          });
        });
        req.on("error", () => {
          failures++;
          resolve();
        });
        req.end();
      });

    // Every write of a polling device's row, logged by a trigger in the bench's database: when it was written and the
    // sighting it wrote, to check the spacing of each device's writes (n_tup_upd only counts them).
    await db.execute(sql.raw("create table bench_device_writes (device_id int not null, seen_at timestamptz, written_at timestamptz not null default clock_timestamp())"));
    await db.execute(sql.raw(`create function bench_log_device_write() returns trigger language plpgsql as $$
        begin insert into bench_device_writes (device_id, seen_at) values (new.id, new.last_seen_at); return null; end $$`));
    await db.execute(sql.raw(`create trigger bench_log_device_write after update on devices for each row
        when (new.device_model_id = ${pollModel.id}) execute function bench_log_device_write()`));

    // Every device seen once (its first sighting is a write), then the flush of that settles.
    const warmStarted = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (next < pollers) await poll(next++);
      }),
    );
    const warmRate = pollers / ((performance.now() - warmStarted) / 1000);
    await sleep(6_000);
    latencies.length = 0;

    // Paced: each device every `pollEverySeconds`, spread evenly, in rounds; at most 4 requests per connection queued.
    const targetRate = pollers / pollEverySeconds;
    const maxOutstanding = connections * 4;
    const rounds: { requests: number; seconds: number; cpuMs: number }[] = [];
    let sent = 0;
    let outstanding = 0;
    const updatesBefore = await devicesUpdates();
    const pacedStarted = performance.now();
    const pacedStartedAt = Date.now();
    for (let r = 0; r < pacedRounds; r++) {
      const roundStarted = performance.now();
      const cpuBefore = cpuMillis(pid);
      let roundRequests = 0;
      // Requests due since the start of the paced run; a slot missed for lack of room is skipped, not caught up.
      let due = Math.floor(((roundStarted - pacedStarted) / 1000) * targetRate);
      while (performance.now() - roundStarted < roundSeconds * 1000) {
        const nowDue = Math.floor(((performance.now() - pacedStarted) / 1000) * targetRate);
        for (; due < nowDue; due++) {
          if (outstanding >= maxOutstanding) continue;
          outstanding++;
          roundRequests++;
          void poll(sent++ % pollers).then(() => outstanding--);
        }
        await sleep(5);
      }
      while (outstanding > 0) await sleep(2);
      const seconds = (performance.now() - roundStarted) / 1000;
      const cpuMs = cpuMillis(pid) - cpuBefore;
      rounds.push({ requests: roundRequests, seconds, cpuMs });
    }
    const pacedSeconds = (performance.now() - pacedStarted) / 1000;
    const pacedLatencies = [...latencies];
    // Flushes run every 5 s: let the last one land before counting.
    await sleep(5_500);
    const pacedWrites = (await devicesUpdates()) - updatesBefore;
    const requestsPaced = rounds.reduce((sum, r) => sum + r.requests, 0);
    // The claim, device by device, from the trigger's log (warm-up included): the closest two writes of one device,
    // by the sightings they wrote and by when they were written, and the most writes of one device within 60 s.
    const logged = (await db.execute(sql`select device_id, extract(epoch from seen_at) * 1000 as seen, extract(epoch from written_at) * 1000 as written
      from bench_device_writes order by device_id, written_at`)) as unknown as { device_id: number; seen: string; written: string }[];
    await db.execute(sql.raw("drop trigger bench_log_device_write on devices"));
    let closestSeenMs = Infinity;
    let closestWrittenMs = Infinity;
    let mostInAMinute = 0;
    let mostInAMinuteSeen = 0;
    let devicesTwiceInAMinute = 0;
    const writeBuckets = Array.from({ length: pacedRounds + 1 }, () => 0);
    for (let i = 0; i < logged.length; ) {
      let j = i;
      while (j < logged.length && logged[j]!.device_id === logged[i]!.device_id) j++;
      const writes = logged.slice(i, j).map((row) => ({ seen: Number(row.seen), written: Number(row.written) }));
      let twice = false;
      for (let k = 0; k < writes.length; k++) {
        if (k > 0) {
          closestSeenMs = Math.min(closestSeenMs, writes[k]!.seen - writes[k - 1]!.seen);
          closestWrittenMs = Math.min(closestWrittenMs, writes[k]!.written - writes[k - 1]!.written);
        }
        const inMinute = writes.filter((w) => w.written >= writes[k]!.written && w.written < writes[k]!.written + 60_000).length;
        mostInAMinute = Math.max(mostInAMinute, inMinute);
        if (inMinute > 1) twice = true;
        mostInAMinuteSeen = Math.max(mostInAMinuteSeen, writes.filter((w) => w.seen >= writes[k]!.seen && w.seen < writes[k]!.seen + 60_000).length);
        const bucket = Math.floor((writes[k]!.written - pacedStartedAt) / (roundSeconds * 1000));
        if (bucket >= 0 && bucket < writeBuckets.length) writeBuckets[bucket]!++;
      }
      if (twice) devicesTwiceInAMinute++;
      i = j;
    }
    const heldRate = requestsPaced / pacedSeconds;
    // The measured window: from the first paced request to the last flush that could carry its sightings.
    const writeWindowSeconds = pacedSeconds;

    // ---- 3. The fleet view over the 10,000 polling devices (all reported poll-1 by now). ----
    const fleetMs: number[] = [];
    const fleetRoundMedians: number[] = [];
    let fleetAnswer = "";
    const fleetCall = async () => {
      const started = performance.now();
      const response = await fetch(`${base}/api/device-models/${pollModel.id}/fleet`, { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } });
      fleetAnswer = await response.text();
      if (response.status !== 200) throw new Error(`fleet: ${response.status} ${fleetAnswer}`);
      return performance.now() - started;
    };
    for (let i = 0; i < 5; i++) await fleetCall(); // warm-up
    const fleetCpuBefore = cpuMillis(pid);
    for (let r = 0; r < fleetRounds; r++) {
      const samples: number[] = [];
      for (let i = 0; i < fleetPerRound; i++) samples.push(await fleetCall());
      fleetMs.push(...samples);
      fleetRoundMedians.push(median(samples));
      await sleep(500);
    }
    const fleetCpuMs = (cpuMillis(pid) - fleetCpuBefore) / (fleetRounds * fleetPerRound);
    // The same fleet with mixed states, as a bigger fleet's history leaves it: a third reported (two versions), a
    // third downloaded a version an hour ago and seen since (inferred), a third unknown; a tenth stale.
    const pollVersion2 = await upload(pollModel.id, "poll-2", 64 * 1024);
    await db.execute(sql`update devices d set
        reported_firmware_version = case when d.id % 3 = 0 then (case when d.id % 2 = 0 then 'poll-1' else 'poll-2' end) end,
        downloaded_version_id = case when d.id % 3 = 1 then ${pollVersion2.version_id}::int end,
        downloaded_at = case when d.id % 3 = 1 then now() - interval '1 hour' end,
        last_seen_at = case when d.id % 10 = 0 then now() - interval '2 days' else now() - interval '5 minutes' end
      where d.device_model_id = ${pollModel.id}`);
    await db.execute(sql`analyze devices`);
    const mixedMs: number[] = [];
    for (let i = 0; i < 5; i++) await fleetCall();
    for (let i = 0; i < fleetRounds * fleetPerRound; i++) mixedMs.push(await fleetCall());
    await stopProcess(server);

    // ---- 2. Staged rollouts, stepped by the internal scheduler every second, devices moved by MQTT notices. ----
    server = await startServer({ ROTATION_SCHEDULER: "internal", ROLLOUT_INTERVAL_SECONDS: "1", ROTATION_INTERVAL_SECONDS: "86400" });
    const rolloutPid = server.pid!;
    const byClientId = new Map(fleet.map((device) => [device.clientId, device]));
    const busy = new Map<string, Promise<void>>();
    const again = new Set<string>();
    let notices = 0;
    let noticeErrors = 0;
    const act = (device: FirmwareDevice): Promise<void> =>
      device
        .notified()
        .then(() => undefined)
        .catch(() => void noticeErrors++)
        .then(() => {
          if (again.delete(device.clientId)) return act(device);
          busy.delete(device.clientId);
        });
    subscriber = await mqtt.connectAsync(MQTT_TEST_URL, { clientId: `rollout-bench-${tag}`, protocolVersion: 5 });
    subscriber.on("message", (topic) => {
      const device = byClientId.get(topic.split("/")[1] ?? "");
      if (!device) return;
      notices++;
      // A device busy updating looks at its target again once done (a notice during an update is not lost).
      if (busy.has(device.clientId)) return void again.add(device.clientId);
      busy.set(device.clientId, act(device));
    });
    await subscriber.subscribeAsync(`iotsupport/+/firmware`, { qos: 1 });

    const failures2: string[] = [];
    const plan = { canary_count: 1, waves: [10, 50, 100], soak_seconds: 0, max_concurrent: 50 };
    const runs: { version: string; seconds: number; peakAdmitted: number; peakFull: number; peakChecks: number; rssPeakMb: number; rssEndMb: number; cpuMs: number; counts: string; state: string; fullDownloads: number }[] = [];
    for (const target of targets) {
      firmwareRequests.records.length = 0;
      const rssBefore = rssBytes(rolloutPid);
      let rssPeak = rssBefore;
      const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(rolloutPid))), 100);
      const cpuBefore = cpuMillis(rolloutPid);
      const started = performance.now();
      const created = await admin("POST", `/api/device-models/${rollModel.id}/rollouts`, { version_id: target.id, ...plan });
      let peakAdmitted = 0;
      let state = created.state as string;
      let counts = created.counts;
      while (state === "running" && performance.now() - started < 10 * 60_000) {
        await sleep(250);
        const now = await admin("GET", `/api/device-models/${rollModel.id}/rollouts/${created.id}`);
        state = now.state;
        counts = now.counts;
        peakAdmitted = Math.max(peakAdmitted, now.counts.admitted);
      }
      const seconds = (performance.now() - started) / 1000;
      const cpuMs = cpuMillis(rolloutPid) - cpuBefore;
      await Promise.all(busy.values());
      clearInterval(rssTimer);
      const records = firmwareRequests.records;
      // What the rollout made of the devices it failed, and what it had seen of them.
      const failedRows = (await db.execute(sql`select d.client_id, rd.wave, rd.failure_reason, rd.downloads, rd.restarts_after_download,
          rd.admitted_at, rd.first_download_at, rd.last_download_at, rd.config_at, rd.settled_at, d.reported_firmware_version, d.reported_at, d.last_seen_at
        from rollout_devices rd join devices d on d.id = rd.device_id where rd.rollout_id = ${created.id} and rd.state = 'failed'`)) as unknown as Record<string, unknown>[];
      for (const row of failedRows) {
        const index = fleet.findIndex((device) => device.clientId === row.client_id);
        failures2.push(`${target.version}: device #${index} (${index % 2 === 0 ? "reports" : "says nothing"}), wave ${row.wave}: ${row.failure_reason}; seen ${JSON.stringify({ ...row, client_id: undefined, wave: undefined, failure_reason: undefined })}`);
      }
      runs.push({
        version: target.version,
        seconds,
        peakAdmitted,
        peakFull: peakOverlap(records.filter((r) => r.full)),
        peakChecks: peakOverlap(records),
        fullDownloads: records.filter((r) => r.full).length,
        rssPeakMb: rssPeak / MiB,
        rssEndMb: rssBytes(rolloutPid) / MiB,
        cpuMs,
        counts: `${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.pending} pending, ${counts.admitted} admitted`,
        state,
      });
    }
    const runningNow = new Map<string, number>();
    for (const device of fleet) runningNow.set(device.running, (runningNow.get(device.running) ?? 0) + 1);

    const figures: BenchResult["figures"] = {
      "1. devices polling": pollers,
      "1. target rate, requests/s (every device every 10 s)": round(targetRate),
      "1. held rate, requests/s, median (min–max) of rounds": spread(rounds.map((r) => r.requests / r.seconds)),
      "1. held rate over the paced run, requests/s": round(heldRate),
      "1. each device polled every, s (at the held rate)": round(pollers / heldRate),
      "1. paced rounds × seconds": `${pacedRounds} × ${roundSeconds}`,
      "1. requests paced": requestsPaced,
      "1. server CPU µs per request, median (min–max) of rounds": spread(rounds.map((r) => (r.cpuMs * 1000) / r.requests), 0),
      "1. request latency ms, median / p95 / max": `${round(median(pacedLatencies))} / ${round(percentile(pacedLatencies, 95))} / ${round(Math.max(...pacedLatencies))}`,
      "1. devices row writes/s over the paced run (n_tup_upd, last flush included)": round(pacedWrites / writeWindowSeconds, 1),
            "1. row writes per device per minute, averaged over the paced run": round(pacedWrites / pollers / (writeWindowSeconds / 60), 2),
      "1. most writes of one device within any 60 s of its sightings (claim ≤ 1)": mostInAMinuteSeen,
      "1. most writes of one device within any 60 s of write time": mostInAMinute,
      "1. devices written twice within 60 s of write time (flush jitter)": devicesTwiceInAMinute,
      "1. closest two writes of one device, s: by sighting written / by write time": `${round(closestSeenMs / 1000)} / ${round(closestWrittenMs / 1000)}`,
      [`1. row writes per ${roundSeconds} s of the paced run, by write time (the last: just after it)`]: writeBuckets.join(", "),
      "1. warm-up (first sighting of every device), requests/s at full speed": Math.round(warmRate),
      "1. failed requests": failures,
      [`3. fleet, ${pollers.toLocaleString("en")} devices all reported: median ms (goal < 100)`]: round(median(fleetMs)),
      "3. fleet, all reported: p95 ms": round(percentile(fleetMs, 95)),
      "3. fleet, all reported: min–max ms": `${round(Math.min(...fleetMs))}–${round(Math.max(...fleetMs))}`,
      "3. fleet, all reported: server CPU ms per call": round(fleetCpuMs),
      "3. fleet, all reported: round medians ms": fleetRoundMedians.map((m) => round(m)).join(", "),
      [`3. fleet, ${pollers.toLocaleString("en")} devices in mixed states: median / p95 ms`]: `${round(median(mixedMs))} / ${round(percentile(mixedMs, 95))}`,
      "3. fleet, mixed: min–max ms": `${round(Math.min(...mixedMs))}–${round(Math.max(...mixedMs))}`,
      "2. rollout devices": rolloutDevices,
      "2. rollouts run": runs.map((r, i) => `${i === 0 ? "1.0.0" : runs[i - 1]!.version} → ${r.version}: ${r.state} (${r.counts})`).join("; "),
      "2. wall time to completion s, median (min–max)": spread(runs.map((r) => r.seconds)),
      "2. peak admitted at once (sampled every 250 ms), per rollout (max_concurrent 50)": runs.map((r) => r.peakAdmitted).join(", "),
      "2. peak concurrent full downloads, per rollout": runs.map((r) => r.peakFull).join(", "),
      "2. peak concurrent GET /iot/firmware (full or boot check), per rollout": runs.map((r) => r.peakChecks).join(", "),
      "2. full downloads, per rollout": runs.map((r) => r.fullDownloads).join(", "),
      "2. server RSS MiB, peak, per rollout": runs.map((r) => Math.round(r.rssPeakMb)).join(", "),
      "2. server RSS MiB, end, per rollout": runs.map((r) => Math.round(r.rssEndMb)).join(", "),
      "2. server CPU s per rollout": runs.map((r) => round(r.cpuMs / 1000)).join(", "),
      "2. MQTT firmware notices received / device errors": `${notices} / ${noticeErrors}`,
      "2. devices running, by version, at the end": [...runningNow].map(([version, count]) => `${version}: ${count}`).join(", "),
      "load average (1 / 5 / 15 min) at the end": loadAverage(),
    };
    return {
      title: `Rollouts: ${pollers.toLocaleString("en")} devices polling with reports, staged rollouts of ${rolloutDevices.toLocaleString("en")} simulated devices, fleet view`,
      figures,
      notes: [
        "Server: `node dist/server.js` in a child process (PostgreSQL in a fresh database, built-in provider, LOG_LEVEL=warn, Mosquitto on 127.0.0.1:1883); devices inserted in bulk with SQL. Polling tokens minted by the built-in issuer in the bench process; the rollout devices get OAuth2 clients and fetch their own tokens.",
        `1. Each of ${pollers} devices GETs /iot/firmware-version with X-Firmware-Version (the same value each time) every ${pollEverySeconds} s, spread evenly (target ${round(targetRate)} requests/s), after every device was seen once; node:http keep-alive over ${connections} connections, at most ${maxOutstanding} requests outstanding (a slot missed for lack of room is skipped, so the held rate shows what the machine sustained). ${pacedRounds} rounds of ${roundSeconds} s (longer than the 60 s after which a device is due a write again, so each device's once-a-minute write falls inside the run). CPU: user + system time of the server process per request, per round. Writes: n_tup_upd of devices over the paced run, the last flush (every 5 s) included; spacing per device from an AFTER UPDATE trigger on devices (bench database only) logging each write's time and the last_seen_at it wrote, over the warm-up and the paced run. All devices were first seen within a few seconds (the warm-up at full speed), so their once-a-minute writes come in bursts a minute apart rather than spread out.`,
        `2. ${rolloutDevices} simulated devices (test/support/firmware-device.ts), half reporting X-Firmware-Version, image ${imageBytes / MiB} MiB, all booted once beforehand; plan canary 1, waves [10, 50, 100], soak 0 s, max_concurrent 50; the server steps rollouts itself (ROTATION_SCHEDULER=internal, ROLLOUT_INTERVAL_SECONDS=1). A device acts on the MQTT firmware notice the server publishes to its topic (the bench subscribes on Mosquitto and calls notified()). Wall time: POST …/rollouts until GET …/rollouts/{id} says completed (sampled every 250 ms). Downloads are timed in the bench process from each GET /iot/firmware to the end of its body (full) or its cancellation after the version block (boot check). RSS: VmRSS sampled every 100 ms. ${rolloutRuns} rollouts in a row on the same fleet (1.0.0 → 2.0.0 → …).`,
        ...(failures2.length > 0 ? [`2. Devices the rollouts failed: ${failures2.join(" | ")}`] : []),
        `3. ${fleetRounds} rounds of ${fleetPerRound} sequential calls after 5 warm-up calls, on the polling model after the polling run (every device reported poll-1); then ${fleetRounds * fleetPerRound} more on the same devices put in mixed states (a third reported, a third inferred, a third unknown, a tenth stale). Answer (mixed): ${fleetAnswer}`,
      ],
    };
  } finally {
    firmwareRequests.restore();
    agent.destroy();
    await subscriber?.endAsync();
    for (const child of children) await stopProcess(child);
    await services.close();
    await database.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await printResultAndExit(run);
