/**
 * Firmware transfer: the real server (child process, PostgreSQL) against nginx serving the same file, in the same run.
 *  - throughput of 50 concurrent downloads of a 2 MiB image from GET /iot/firmware vs nginx, in ≥ 5 alternating
 *    rounds (goal, issue 16 §3: ≥ 85 % of nginx's downloads/s, the median of the per-round ratios), with the CPU
 *    time per download of each beside it;
 *  - the server's RSS growth while 100 downloads run at once, with clients that stall before reading (goal < 50 MB);
 *  - upload time of a 4 MiB image (a valid image built with the esptool layout: segments, checksum, SHA-256).
 *
 *   npm run build && node --import tsx test/bench/firmware.bench.ts
 *   (PostgreSQL on 127.0.0.1:5432; nginx installed: apt-get install nginx)
 *   BENCH_ROUNDS=5 BENCH_DOWNLOADS=100 npm run bench -- firmware        (a short run: rounds, downloads per round)
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Agent, createServer as createHttpServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createTestDatabase } from "../support/database.ts";
import { buildImage } from "../support/firmware-image.ts";
import { freePort } from "../support/server.ts";
import { BENCH_ADMIN_TOKEN, benchServerEnv, cpuMillis, rssBytes, stopProcess, waitUntilListening } from "./processes.ts";
import { alternatingRounds, isMain, loadAverage, loadFigures, median, numberFromEnv, printResultAndExit, ratioFigures, roundRatios, spread, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;

/**
 * nginx on 127.0.0.1:`port` with a throw-away prefix and config, in the foreground (a child we can stop).
 * `workers`: 1 (like our one Node process) or "auto" (one per core, the Debian package's default).
 */
function startNginx(port: number, root: string, prefix: string, workers: 1 | "auto"): ChildProcess {
  const which = spawnSync("sh", ["-c", "command -v nginx || ls /usr/sbin/nginx"], { encoding: "utf8" });
  const binary = which.stdout.trim().split("\n")[0];
  if (!binary) throw new Error("nginx is not installed (apt-get update && apt-get install -y nginx)");
  const conf = join(prefix, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / { }
  }
}
`,
  );
  return spawn(binary, ["-p", prefix, "-c", conf, "-e", join(prefix, "error.log")], { stdio: ["ignore", "ignore", "inherit"] });
}

/**
 * The ceilings for a Node server without sendfile, with nothing else to do: node:http piping fs.createReadStream
 * (`stream`), or writing the file from one Buffer read at start (`memory`).
 */
function serveBare(mode: "stream" | "memory", port: number, file: string) {
  const { size } = statSync(file);
  const bytes = readFileSync(file);
  createHttpServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
    if (mode === "memory") res.end(bytes);
    else createReadStream(file).pipe(res);
  }).listen(port, "127.0.0.1");
}

type Target = { name: string; url: string; pid: number; headers?: Record<string, string> };
type Throughput = { mibPerSecond: number; downloadsPerSecond: number; seconds: number; cpuMsPerDownload: number };

/**
 * `downloads` full downloads of `url`, `connections` at a time, by curl (C, keep-alive, --parallel): a client fast
 * enough that the server, not the client, sets the pace. Every transfer must be a 200 of exactly `size` bytes.
 */
async function throughput(target: Target, connections: number, downloads: number, size: number, work: string): Promise<Throughput> {
  const { url, headers = {}, pid } = target;
  const config = join(work, "curl.cfg");
  writeFileSync(config, Array.from({ length: downloads }, () => `url = "${url}"\noutput = "/dev/null"\n`).join(""));
  const args = ["--silent", "--show-error", "--no-progress-meter", "--parallel", "--parallel-immediate", "--parallel-max", String(connections), "-K", config, "-w", "%{http_code} %{size_download}\\n"];
  for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
  const started = performance.now();
  const cpuBefore = cpuMillis(pid);
  const curl = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  curl.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  curl.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((resolve) => curl.once("exit", resolve));
  const seconds = (performance.now() - started) / 1000;
  const cpuMsPerDownload = (cpuMillis(pid) - cpuBefore) / downloads;
  const lines = out.trim().split("\n");
  const good = lines.filter((line) => line === `200 ${size}`).length;
  if (code !== 0 || good !== downloads) throw new Error(`${url}: curl exited ${code}; ${good} of ${downloads} downloads complete (${lines.find((l) => l !== `200 ${size}`)}) ${err.slice(-500)}`);
  return { mibPerSecond: (downloads * size) / MiB / seconds, downloadsPerSecond: downloads / seconds, seconds, cpuMsPerDownload };
}


/**
 * `count` downloads at once; each client reads its first chunk, then stalls `stallMs` (the server must hold back,
 * not buffer the rest), then reads to the end. Returns the server's peak RSS growth (sampled every 10 ms).
 */
async function rssGrowth(pid: number, url: string, token: string, size: number, count: number, stallMs: number) {
  const agent = new Agent({ keepAlive: false, maxSockets: count });
  const baseline = rssBytes(pid);
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 10);
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const req = request(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let got = 0;
        res.once("data", () => {
          res.pause();
          setTimeout(() => res.resume(), stallMs);
        });
        res.on("data", (chunk: Buffer) => (got += chunk.length));
        res.on("end", () => resolve(got));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
  try {
    const sizes = await Promise.all(Array.from({ length: count }, one));
    if (sizes.some((got) => got !== size)) throw new Error(`a download was incomplete: ${sizes.filter((s) => s !== size).join(", ")}`);
  } finally {
    clearInterval(sampler);
    agent.destroy();
  }
  peak = Math.max(peak, rssBytes(pid));
  return { baselineMb: baseline / 1e6, peakMb: peak / 1e6, growthMb: (peak - baseline) / 1e6 };
}

/**
 * Uploads an image as the model's stable version at once (rollout=immediate: a new model's default is a staged rollout,
 * which would leave the bench's device on no firmware and every download a 404).
 */
async function timedUpload(base: string, modelId: number, image: Uint8Array<ArrayBuffer>): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${base}/api/device-models/${modelId}/firmware?rollout=immediate`, {
    method: "POST",
    headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
    body: image,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`upload failed: ${response.status} ${text}`);
  return performance.now() - started;
}

/**
 * `rounds` (BENCH_ROUNDS, default 7, at least 5) alternating rounds of `downloads` (BENCH_DOWNLOADS, default 500)
 * downloads per target.
 */
export async function run(options: { rounds?: number; downloads?: number; connections?: number } = {}): Promise<BenchResult> {
  const { downloads = Math.round(numberFromEnv("BENCH_DOWNLOADS", 500)), connections = 50 } = options;
  const rounds = alternatingRounds(options.rounds, 7);
  const loadBefore = loadAverage();
  const database = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), "iot-fw-bench-"));
  const env = benchServerEnv({ databaseUrl: database.url, dataDir: join(work, "data"), baseUrl: "http://bench.local" });
  const services = await createServices(loadConfig({ ...env, MIGRATE_ON_START: "true" }));
  const children: ChildProcess[] = [];
  const child = (args: string[], extraEnv: Record<string, string> = {}) => {
    const started = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env, ...extraEnv }, stdio: ["ignore", "ignore", "inherit"] });
    children.push(started);
    return started;
  };
  const nginxes: ChildProcess[] = [];
  try {
    const model = await services.models.create({ code: "bench", name: "Bench" }, "test-admin");
    const device = await services.devices.create({ device_model_id: model.id, config: "{}" }, "test-admin");
    const token = (await services.builtinIssuer!.issueToken(device.client_id, 1)).access_token;

    /** The built server on its own port; both instances share the database and the assets directory. */
    const startServer = async (extraEnv: Record<string, string>) => {
      const port = await freePort();
      // BENCH_CPU_PROF_DIR=<dir> writes a CPU profile of each server (open it in Chrome DevTools).
      const profile = process.env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
      const server = child([...profile, "dist/server.js"], { ...extraEnv, PORT: String(port) });
      const base = `http://127.0.0.1:${port}`;
      await waitUntilListening(`${base}/api/health/live`, server);
      return { base, pid: server.pid! };
    };
    const server = await startServer({});

    // Upload: a 4 MiB image, five times (each a new version, so each is stored and committed).
    const uploads: number[] = [];
    for (let i = 0; i < 5; i++) uploads.push(await timedUpload(server.base, model.id, buildImage({ version: `bench-4m-${i}`, size: 4 * MiB })));

    // The download image: 2 MiB, stored by the server and copied for nginx.
    const image = buildImage({ version: "bench-2m", size: 2 * MiB });
    await timedUpload(server.base, model.id, image);
    const nginxRoot = join(work, "www");
    chmodSync(work, 0o755); // nginx workers run as an unprivileged user
    mkdirSync(nginxRoot, { mode: 0o755 });
    const imagePath = join(nginxRoot, "firmware.bin");
    writeFileSync(imagePath, image);
    const startNginxWith = async (workers: 1 | "auto") => {
      const port = await freePort();
      const prefix = join(work, `nginx-${workers}`);
      mkdirSync(prefix);
      const started = startNginx(port, nginxRoot, prefix, workers);
      nginxes.push(started);
      const url = `http://127.0.0.1:${port}/firmware.bin`;
      await waitUntilListening(url, started);
      return { url, pid: started.pid! };
    };
    const startBare = async (mode: "stream" | "memory") => {
      const port = await freePort();
      const bare = child(["--import", "tsx", THIS_FILE, "--bare-server", mode, String(port), imagePath]);
      const url = `http://127.0.0.1:${port}/`;
      await waitUntilListening(url, bare);
      return { url, pid: bare.pid! };
    };
    const uncached = await startServer({ FIRMWARE_CACHE_BYTES: "0" });

    // Memory first, on a server that has done little: 100 downloads at once, clients stalled for 1 s.
    const firmwareUrl = `${server.base}/iot/firmware`;
    await rssGrowth(server.pid, firmwareUrl, token, image.length, 10, 0); // warm-up
    const memory = await rssGrowth(server.pid, firmwareUrl, token, image.length, 100, 1000);
    const memoryFast = await rssGrowth(server.pid, firmwareUrl, token, image.length, 100, 0);

    // Throughput: one warm-up round of each (the JIT compiles the hot paths), then alternating rounds.
    const auth = { authorization: `Bearer ${token}` };
    const targets: Target[] = [
      { name: "server", url: firmwareUrl, pid: server.pid, headers: auth },
      { name: "nginx", ...(await startNginxWith(1)) },
      { name: "nginx, worker_processes auto", ...(await startNginxWith("auto")) },
      { name: "server, FIRMWARE_CACHE_BYTES=0", url: `${uncached.base}/iot/firmware`, pid: uncached.pid, headers: auth },
      { name: "bare node, file in memory", ...(await startBare("memory")) },
      { name: "bare node, createReadStream", ...(await startBare("stream")) },
    ];
    const measured = new Map<string, Throughput[]>(targets.map((target) => [target.name, []]));
    for (const target of targets) await throughput(target, connections, downloads, image.length, work);
    for (let round = 1; round <= rounds; round++) {
      for (const target of targets) measured.get(target.name)!.push(await throughput(target, connections, downloads, image.length, work));
      const line = targets.map(({ name }) => `${name} ${measured.get(name)!.at(-1)!.downloadsPerSecond.toFixed(0)}`).join(", ");
      process.stdout.write(`round ${round} downloads/s: ${line}\n`);
    }
    const loadAfter = loadAverage();
    const series = (name: string, figure: keyof Throughput) => measured.get(name)!.map((t) => t[figure]);
    // The goal is measured against whichever nginx setup was faster in this run (median downloads/s of its rounds).
    const nginxSetups = ["nginx", "nginx, worker_processes auto"];
    const fastestNginx = nginxSetups.reduce((a, b) => (median(series(b, "downloadsPerSecond")) > median(series(a, "downloadsPerSecond")) ? b : a));
    /** Per-round % of the fastest nginx: downloads/s (ours / nginx) and CPU per download (nginx / ours). */
    const ofNginx = (name: string) => ({
      downloads: roundRatios(series(name, "downloadsPerSecond"), series(fastestNginx, "downloadsPerSecond")),
      cpu: roundRatios(series(name, "cpuMsPerDownload"), series(fastestNginx, "cpuMsPerDownload"), false),
    });
    const serverOfNginx = ofNginx("server");
    process.stdout.write(
      `server/${fastestNginx}, median (min–max) of ${rounds} rounds: downloads/s ${spread(serverOfNginx.downloads)} % (goal ≥ 85 %), CPU per download (nginx/server) ${spread(serverOfNginx.cpu)} %\n`,
    );

    const figures: BenchResult["figures"] = {
      ...ratioFigures("downloads/s ratio % server/nginx (goal ≥ 85)", serverOfNginx.downloads),
      ...ratioFigures("CPU ratio % nginx/server ms per download", serverOfNginx.cpu),
      "nginx setup compared with": fastestNginx,
    };
    for (const { name } of targets) {
      figures[`${name}: downloads/s, median (min–max)`] = spread(series(name, "downloadsPerSecond"), 0);
      figures[`${name}: MiB/s, median`] = Math.round(median(series(name, "mibPerSecond")));
      figures[`${name}: CPU ms per download, median (min–max)`] = spread(series(name, "cpuMsPerDownload"), 2);
      if (name !== "server" && !nginxSetups.includes(name)) figures[`${name}: % of nginx downloads/s, median (min–max) of rounds`] = spread(ofNginx(name).downloads);
    }
    Object.assign(figures, loadFigures(loadBefore, loadAfter));
    Object.assign(figures, {
      "RSS baseline MB": Math.round(memory.baselineMb),
      "RSS growth MB, 100 stalled downloads (goal < 50)": Math.round(memory.growthMb * 10) / 10,
      "RSS growth MB, 100 fast downloads (goal < 50)": Math.round(memoryFast.growthMb * 10) / 10,
      "upload 4 MiB, median ms": Math.round(median(uploads)),
      "upload 4 MiB, min / max ms": `${Math.round(Math.min(...uploads))} / ${Math.round(Math.max(...uploads))}`,
      "upload MiB/s (median)": Math.round((4 / (median(uploads) / 1000)) * 10) / 10,
    });

    return {
      title: `Firmware: ${downloads} × 2 MiB downloads, ${connections} at a time, vs nginx, RSS with 100 downloads, 4 MiB upload`,
      figures,
      notes: [
        "Server: `node dist/server.js` in a child process (PostgreSQL, built-in provider, LOG_LEVEL=warn), images served from memory (FIRMWARE_CACHE_BYTES default); a second instance with FIRMWARE_CACHE_BYTES=0 streams every download from disk. nginx from Debian's package, sendfile on, tcp_nopush on, access_log off, with 1 worker (like the one Node process) and with worker_processes auto (its default); the ratios use whichever was faster. The client is curl --parallel (50 at a time) for all.",
        `Throughput: ${downloads} full 2 MiB downloads per round (BENCH_DOWNLOADS); one warm-up round each, then ${rounds} alternating rounds (BENCH_ROUNDS, ≥ 5), every target once per round in the order listed; each download checked to be a 200 of the full size; device token for the servers, none for nginx and the bare servers. CPU: user + system time of the serving process (all threads; for nginx, its workers too) per download, read from /proc in 10-ms ticks: nginx uses only a few ticks per round, so its CPU figure and the CPU ratio are coarse (more downloads per round make them finer).`,
        "Ratios are taken per round (each target against the compared nginx setup's download in the same round) and given as the median (min–max) of the rounds; the downloads/s and CPU figures are medians of the rounds too.",
        "Load average: before is when the bench started, before its own setup; after is right after the last throughput round, so it includes the bench's own load (curl and the server or nginx). On this 2-core machine, a 1-min load well above 2 after means other work competed for the cores.",
        "RSS: VmRSS of the server process sampled every 10 ms; the stalled clients read one chunk, pause 1 s, then read the rest.",
        "Uploads: 5 different valid 4 MiB images built with the esptool layout (test/support/firmware-image.ts), raw body over HTTP to the same server; each is validated, fsynced, renamed and committed.",
      ],
    };
  } finally {
    for (const started of nginxes) await stopProcess(started, "SIGQUIT");
    for (const started of children) await stopProcess(started);
    await services.close();
    await database.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const bareAt = process.argv.indexOf("--bare-server");
  if (bareAt > 0) {
    serveBare(process.argv[bareAt + 1] as "stream" | "memory", Number(process.argv[bareAt + 2]), process.argv[bareAt + 3]!);
  } else {
    await printResultAndExit(run);
  }
}
