/**
 * Firmware transfer: the real server (child process, PostgreSQL) against nginx serving the same file, in the same run.
 *  - throughput of 50 concurrent downloads of a 2 MiB image from GET /iot/firmware vs nginx (goal ≥ 80 % of nginx);
 *  - the server's RSS growth while 100 downloads run at once, with clients that stall before reading (goal < 50 MB);
 *  - upload time of a 4 MiB image (a valid image built with the esptool layout: segments, checksum, SHA-256).
 *
 *   node --import tsx test/bench/firmware.bench.ts     (PostgreSQL on 127.0.0.1:5432; nginx installed: apt-get install nginx)
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Agent, createServer as createHttpServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { generateFernetKey } from "../../lib/secrets.ts";
import { createTestDatabase } from "../support/database.ts";
import { buildImage } from "../support/firmware-image.ts";
import { freePort } from "../support/server.ts";
import { figuresTable, median, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
const MiB = 1024 * 1024;
const ADMIN_TOKEN = "bench-admin-token-0123456789";

async function waitUntilListening(url: string, child: ChildProcess) {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with ${child.exitCode}`);
    try {
      await fetch(url, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing answered at ${url}`);
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM") {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** nginx on 127.0.0.1:`port` with a throw-away prefix and config, in the foreground (a child we can stop). */
function startNginx(port: number, root: string, prefix: string): ChildProcess {
  const which = spawnSync("sh", ["-c", "command -v nginx || ls /usr/sbin/nginx"], { encoding: "utf8" });
  const binary = which.stdout.trim().split("\n")[0];
  if (!binary) throw new Error("nginx is not installed (apt-get update && apt-get install -y nginx)");
  const conf = join(prefix, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
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

/** The ceiling for any Node server without sendfile: node:http piping fs.createReadStream, nothing else. */
function serveBare(port: number, file: string) {
  const { size } = statSync(file);
  createHttpServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
    createReadStream(file).pipe(res);
  }).listen(port, "127.0.0.1");
}

type Throughput = { mibPerSecond: number; downloadsPerSecond: number; seconds: number };

/**
 * `downloads` full downloads of `url`, `connections` at a time, by curl (C, keep-alive, --parallel): a client fast
 * enough that the server, not the client, sets the pace. Every transfer must be a 200 of exactly `size` bytes.
 */
async function throughput(url: string, headers: Record<string, string>, connections: number, downloads: number, size: number, work: string): Promise<Throughput> {
  const config = join(work, "curl.cfg");
  writeFileSync(config, Array.from({ length: downloads }, () => `url = "${url}"\noutput = "/dev/null"\n`).join(""));
  const args = ["--silent", "--show-error", "--no-progress-meter", "--parallel", "--parallel-immediate", "--parallel-max", String(connections), "-K", config, "-w", "%{http_code} %{size_download}\\n"];
  for (const [name, value] of Object.entries(headers)) args.push("-H", `${name}: ${value}`);
  const started = performance.now();
  const curl = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  curl.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  curl.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((resolve) => curl.once("exit", resolve));
  const seconds = (performance.now() - started) / 1000;
  const lines = out.trim().split("\n");
  const good = lines.filter((line) => line === `200 ${size}`).length;
  if (code !== 0 || good !== downloads) throw new Error(`${url}: curl exited ${code}; ${good} of ${downloads} downloads complete (${lines.find((l) => l !== `200 ${size}`)}) ${err.slice(-500)}`);
  return { mibPerSecond: (downloads * size) / MiB / seconds, downloadsPerSecond: downloads / seconds, seconds };
}

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

/**
 * `count` downloads at once; each client reads its first chunk, then stalls `stallMs` (the server must hold back,
 * not buffer the rest), then reads to the end. Returns the server's peak RSS growth (sampled every 10 ms).
 */
async function rssGrowth(pid: number, url: string, token: string, size: number, count: number, stallMs: number) {
  const agent = new Agent({ keepAlive: false, maxSockets: count });
  const baseline = rssOf(pid);
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 10);
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
  peak = Math.max(peak, rssOf(pid));
  return { baselineMb: baseline / 1e6, peakMb: peak / 1e6, growthMb: (peak - baseline) / 1e6 };
}

async function timedUpload(base: string, modelId: number, image: Uint8Array<ArrayBuffer>): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${base}/api/device-models/${modelId}/firmware`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/octet-stream" },
    body: image,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`upload failed: ${response.status} ${text}`);
  return performance.now() - started;
}

export async function run(options: { downloads?: number; connections?: number } = {}): Promise<BenchResult> {
  const { downloads = 500, connections = 50 } = options;
  const database = await createTestDatabase();
  const work = mkdtempSync(join(tmpdir(), "iot-fw-bench-"));
  const env = {
    DATABASE_URL: database.url,
    DATA_DIR: join(work, "data"),
    SECRET_ENCRYPTION_KEY: generateFernetKey(),
    ADMIN_API_TOKEN: ADMIN_TOKEN,
    BASEURL: "http://bench.local",
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    ROTATION_SCHEDULER: "external",
  };
  const services = await createServices(loadConfig({ ...env, MIGRATE_ON_START: "true" }));
  let server: ChildProcess | undefined;
  let nginx: ChildProcess | undefined;
  let bare: ChildProcess | undefined;
  try {
    const model = await services.models.create({ code: "bench", name: "Bench" });
    const device = await services.devices.create({ device_model_id: model.id, config: "{}" });
    const token = (await services.builtinIssuer!.issueToken(device.client_id)).access_token;

    const serverPort = await freePort();
    const base = `http://127.0.0.1:${serverPort}`;
    server = spawn(process.execPath, ["--import", "tsx", "server.ts"], {
      cwd: ROOT,
      env: { ...process.env, ...env, PORT: String(serverPort) },
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitUntilListening(`${base}/api/health/live`, server);

    // Upload: a 4 MiB image, five times (each a new version, so each is stored and committed).
    const uploads: number[] = [];
    for (let i = 0; i < 5; i++) uploads.push(await timedUpload(base, model.id, buildImage({ version: `bench-4m-${i}`, size: 4 * MiB })));

    // The download image: 2 MiB, stored by the server and copied for nginx.
    const image = buildImage({ version: "bench-2m", size: 2 * MiB });
    await timedUpload(base, model.id, image);
    const nginxRoot = join(work, "www");
    chmodSync(work, 0o755); // nginx workers run as an unprivileged user
    mkdirSync(nginxRoot, { mode: 0o755 });
    mkdirSync(join(work, "nginx"));
    writeFileSync(join(nginxRoot, "firmware.bin"), image);
    const nginxPort = await freePort();
    nginx = startNginx(nginxPort, nginxRoot, join(work, "nginx"));
    const nginxUrl = `http://127.0.0.1:${nginxPort}/firmware.bin`;
    await waitUntilListening(nginxUrl, nginx);
    const barePort = await freePort();
    bare = spawn(process.execPath, ["--import", "tsx", THIS_FILE, "--bare-server", String(barePort), join(nginxRoot, "firmware.bin")], { stdio: ["ignore", "ignore", "inherit"] });
    const bareUrl = `http://127.0.0.1:${barePort}/`;
    await waitUntilListening(bareUrl, bare);

    // Memory first, on a server that has done little: 100 downloads at once, clients stalled for 1 s.
    const firmwareUrl = `${base}/iot/firmware`;
    await rssGrowth(server.pid!, firmwareUrl, token, image.length, 10, 0); // warm-up
    const memory = await rssGrowth(server.pid!, firmwareUrl, token, image.length, 100, 1000);
    const memoryFast = await rssGrowth(server.pid!, firmwareUrl, token, image.length, 100, 0);

    // Throughput, alternating server and nginx twice, after a warm-up of each.
    const auth = { authorization: `Bearer ${token}` };
    const size = image.length;
    await throughput(firmwareUrl, auth, connections, connections * 2, size, work);
    await throughput(nginxUrl, {}, connections, connections * 2, size, work);
    await throughput(bareUrl, {}, connections, connections * 2, size, work);
    const ours: Throughput[] = [];
    const theirs: Throughput[] = [];
    const bares: Throughput[] = [];
    for (let round = 0; round < 3; round++) {
      ours.push(await throughput(firmwareUrl, auth, connections, downloads, size, work));
      theirs.push(await throughput(nginxUrl, {}, connections, downloads, size, work));
      bares.push(await throughput(bareUrl, {}, connections, downloads, size, work));
    }
    const best = (list: Throughput[]) => list.reduce((a, b) => (b.mibPerSecond > a.mibPerSecond ? b : a));
    const server_ = best(ours);
    const nginx_ = best(theirs);
    const bare_ = best(bares);
    const ratio = server_.mibPerSecond / nginx_.mibPerSecond;

    return {
      title: `Firmware: ${downloads} × 2 MiB downloads, ${connections} at a time, vs nginx, RSS with 100 downloads, 4 MiB upload`,
      figures: {
        "server MiB/s (GET /iot/firmware)": Math.round(server_.mibPerSecond),
        "server downloads/s": Math.round(server_.downloadsPerSecond),
        "nginx MiB/s (same file)": Math.round(nginx_.mibPerSecond),
        "nginx downloads/s": Math.round(nginx_.downloadsPerSecond),
        "bare node:http + createReadStream MiB/s": Math.round(bare_.mibPerSecond),
        "ratio server / nginx % (goal ≥ 80)": Math.round(ratio * 1000) / 10,
        "ratio bare node / nginx %": Math.round((bare_.mibPerSecond / nginx_.mibPerSecond) * 1000) / 10,
        "ratio server / bare node %": Math.round((server_.mibPerSecond / bare_.mibPerSecond) * 1000) / 10,
        "rounds server MiB/s": ours.map((t) => Math.round(t.mibPerSecond)).join(", "),
        "rounds nginx MiB/s": theirs.map((t) => Math.round(t.mibPerSecond)).join(", "),
        "rounds bare node MiB/s": bares.map((t) => Math.round(t.mibPerSecond)).join(", "),
        "RSS baseline MB": Math.round(memory.baselineMb),
        "RSS growth MB, 100 stalled downloads (goal < 50)": Math.round(memory.growthMb * 10) / 10,
        "RSS growth MB, 100 fast downloads (goal < 50)": Math.round(memoryFast.growthMb * 10) / 10,
        "upload 4 MiB, median ms": Math.round(median(uploads)),
        "upload 4 MiB, min / max ms": `${Math.round(Math.min(...uploads))} / ${Math.round(Math.max(...uploads))}`,
        "upload MiB/s (median)": Math.round((4 / (median(uploads) / 1000)) * 10) / 10,
      },
      notes: [
        "Server: `node --import tsx server.ts` in a child process (PostgreSQL, built-in provider, LOG_LEVEL=warn); nginx 1 worker, sendfile on, access_log off; the client is curl --parallel (50 at a time) for both.",
        "Throughput: 500 full 2 MiB downloads per round, best of three alternating rounds each; each checked to be a 200 of the full size; device token for the server, none for nginx.",
        "RSS: VmRSS of the server process sampled every 10 ms; the stalled clients read one chunk, pause 1 s, then read the rest.",
        "Uploads: 5 different valid 4 MiB images built with the esptool layout (test/support/firmware-image.ts), raw body over HTTP to the same server; each is validated, fsynced, renamed and committed.",
      ],
    };
  } finally {
    if (nginx) await stop(nginx, "SIGQUIT");
    if (bare) await stop(bare);
    if (server) await stop(server);
    await services.close();
    await database.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bareAt = process.argv.indexOf("--bare-server");
  if (bareAt > 0) {
    serveBare(Number(process.argv[bareAt + 1]), process.argv[bareAt + 2]!);
  } else {
    const result = await run();
    process.stdout.write(`${result.title}\n${figuresTable(result.figures)}\n${(result.notes ?? []).map((n) => `- ${n}\n`).join("")}`);
    process.exit(0);
  }
}
