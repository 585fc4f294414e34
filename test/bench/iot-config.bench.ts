/**
 * GET /iot/config under load: the real server (built-in provider, PostgreSQL) against a bare node:http server that
 * does the same token check (lib/identity/tokens.ts: jose, same key, tokens that passed remembered) and the same
 * prepared device query, each in a child process of its own, loaded by autocannon from this process. The ratio is
 * what the framework (adapter, router, envelope, logs, metrics) costs; the goal (issue 16 §3) is ≥ 85 % of the bare
 * server on req/s and on CPU µs per request, each the median of the per-round ratios of ≥ 5 alternating rounds.
 *
 *   npm run build && node --import tsx test/bench/iot-config.bench.ts        (PostgreSQL on 127.0.0.1:5432)
 *   BENCH_ROUNDS=5 BENCH_ROUND_SECONDS=0.5 npm run bench -- iot-config       (a short run)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { createLocalJWKSet } from "jose";
import { openPostgres } from "../../db/client.ts";
import { prepareDeviceByClientId } from "../../db/device-with-model.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createJwtCheck } from "../../lib/identity/tokens.ts";
import { createTestDatabase } from "../support/database.ts";
import { benchServerEnv, cpuMillis, stopProcess, waitUntilListening } from "./processes.ts";
import { alternatingRounds, isMain, loadAverage, loadFigures, median, numberFromEnv, printResultAndExit, ratioFigures, roundRatios, spread, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
const BASE_URL = "http://bench.local";
const ISSUER = `${BASE_URL}/oauth2`;
const AUDIENCE = "iot-backend";
const DEVICE_CLIENT_ID = /^iotdevice-[a-z0-9_]+-[a-z0-9]{8}$/;
const CONFIG = JSON.stringify({ deviceName: "Bench sensor", deviceEntityId: "sensor.bench", enableOTA: true, interval: 30, thresholds: { low: 18.5, high: 24 } });

/** The comparison server: nothing but node:http, the same token check and the same prepared device query. */
async function serveBare(port: number) {
  const check = createJwtCheck({ keys: createLocalJWKSet(JSON.parse(process.env.BENCH_JWKS!)), issuer: ISSUER, audience: AUDIENCE, clockSkewSeconds: 30 });
  const { db } = openPostgres(process.env.DATABASE_URL!);
  const deviceByClientId = prepareDeviceByClientId(db);
  const unauthorized = '{"error":"unauthorized"}';
  createServer(async (req, res) => {
    try {
      const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
      const payload = await check(token);
      const [found] = DEVICE_CLIENT_ID.test(payload.azp ?? "") ? await deviceByClientId.execute({ clientId: payload.azp }) : [];
      if (!found) {
        res.writeHead(401, { "content-type": "application/json" }).end(unauthorized);
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-cache" }).end(found.device.config);
    } catch {
      res.writeHead(401, { "content-type": "application/json" }).end(unauthorized);
    }
  }).listen(port, "127.0.0.1");
  process.once("SIGTERM", () => process.exit(0));
}

/** BENCH_CPU_PROF_DIR=<dir> writes a CPU profile of each server (open it in Chrome DevTools). */
function startChild(args: string[], env: Record<string, string>): ChildProcess {
  const profile = process.env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
  // The server runs as it ships (the bundle); the bare server is this TypeScript file.
  const loader = args[0]!.endsWith(".ts") ? ["--import", "tsx"] : [];
  return spawn(process.execPath, [...profile, ...loader, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
}

type Target = { name: string; child: ChildProcess; port: number };
type Round = { requestsPerSecond: number; cpuMicrosPerRequest: number; p50: number; p99: number; non2xx: number; errors: number };

async function load(target: Target, tokens: string[], seconds: number, connections: number): Promise<Round> {
  const cpuBefore = cpuMillis(target.child.pid!);
  const result = await autocannon({
    url: `http://127.0.0.1:${target.port}`,
    connections,
    duration: seconds,
    requests: tokens.map((token) => ({ method: "GET", path: "/iot/config", headers: { authorization: `Bearer ${token}` } })),
  });
  const requests = result.requests.total;
  return {
    requestsPerSecond: requests / result.duration,
    cpuMicrosPerRequest: ((cpuMillis(target.child.pid!) - cpuBefore) * 1000) / requests,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/**
 * Both servers run side by side and are loaded in alternating rounds (never at once), server first in each: a change
 * in the machine's other load during the run hits both alike, and each round gives one server/bare ratio.
 */
async function compare(targets: [Target, Target], tokens: string[], options: { rounds: number; roundSeconds: number; connections: number }) {
  try {
    for (const target of targets) {
      await waitUntilListening(`http://127.0.0.1:${target.port}/`, target.child);
      await load(target, tokens, 2, options.connections); // warm-up: JIT, pool connections, key import
    }
    const results: [Round[], Round[]] = [[], []];
    for (let round = 1; round <= options.rounds; round++) {
      for (const [index, target] of targets.entries()) {
        const measured = await load(target, tokens, options.roundSeconds, options.connections);
        if (measured.non2xx > 0 || measured.errors > 0) throw new Error(`${target.name}, round ${round}: ${measured.non2xx} non-2xx answers and ${measured.errors} errors`);
        results[index]!.push(measured);
        process.stdout.write(`round ${round} ${target.name}: ${measured.requestsPerSecond.toFixed(0)} req/s, ${measured.cpuMicrosPerRequest.toFixed(0)} µs CPU/request\n`);
      }
    }
    return results;
  } finally {
    await Promise.all(targets.map((target) => stopProcess(target.child)));
  }
}

/** One target's figures over the rounds: median (min–max) of req/s and CPU µs/request, medians of p50 and p99. */
const targetFigures = (name: string, rounds: Round[]): BenchResult["figures"] => ({
  [`${name} req/s, median (min–max)`]: spread(rounds.map((r) => r.requestsPerSecond), 0),
  [`${name} CPU µs/request, median (min–max)`]: spread(rounds.map((r) => r.cpuMicrosPerRequest), 0),
  [`${name} p50 ms, median`]: median(rounds.map((r) => r.p50)),
  [`${name} p99 ms, median`]: median(rounds.map((r) => r.p99)),
});

/**
 * `rounds` (BENCH_ROUNDS, default 7, at least 5) alternating rounds of `roundSeconds` (BENCH_ROUND_SECONDS, default
 * 1.5) per server, after a 2-s warm-up of each.
 */
export async function run(options: { rounds?: number; roundSeconds?: number; connections?: number; devices?: number } = {}): Promise<BenchResult> {
  const { roundSeconds = numberFromEnv("BENCH_ROUND_SECONDS", 1.5), connections = 64, devices: deviceCount = 50 } = options;
  const rounds = alternatingRounds(options.rounds, 7);
  const loadBefore = loadAverage();
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-bench-"));
  const env = benchServerEnv({ databaseUrl: database.url, dataDir: dataDir, baseUrl: BASE_URL });
  const services = await createServices(loadConfig({ ...env, MIGRATE_ON_START: "true" }));
  try {
    const model = await services.models.create({ code: "bench", name: "Bench" }, "test-admin");
    const tokens: string[] = [];
    for (let i = 0; i < deviceCount; i++) {
      const device = await services.devices.create({ device_model_id: model.id, config: CONFIG }, "test-admin");
      tokens.push((await services.builtinIssuer!.issueToken(device.client_id, 1)).access_token);
    }
    const jwks = JSON.stringify(await services.builtinIssuer!.jwks());

    const serverPort = 32_001;
    const barePort = 32_002;
    const [server, bare] = await compare(
      [
        { name: "server", child: startChild(["dist/server.js"], { ...env, PORT: String(serverPort) }), port: serverPort },
        {
          name: "bare node:http",
          child: startChild([THIS_FILE, "--bare-server", String(barePort)], { DATABASE_URL: database.url, BENCH_JWKS: jwks }),
          port: barePort,
        },
      ],
      tokens,
      { rounds, roundSeconds, connections },
    );
    const loadAfter = loadAverage();
    const throughputRatios = roundRatios(server.map((r) => r.requestsPerSecond), bare.map((r) => r.requestsPerSecond));
    const cpuRatios = roundRatios(server.map((r) => r.cpuMicrosPerRequest), bare.map((r) => r.cpuMicrosPerRequest), false);
    process.stdout.write(
      `server/bare, median (min–max) of ${rounds} rounds: req/s ${spread(throughputRatios)} %, CPU µs/request (bare/server) ${spread(cpuRatios)} % (goal ≥ 85 % for both)\n`,
    );
    return {
      title: `GET /iot/config, ${connections} connections, ${rounds} rounds of ${roundSeconds} s, ${deviceCount} devices: server vs bare node:http`,
      figures: {
        ...ratioFigures("req/s ratio % server/bare (goal ≥ 85)", throughputRatios),
        ...ratioFigures("CPU ratio % bare/server µs per request (goal ≥ 85)", cpuRatios),
        ...targetFigures("server", server),
        ...targetFigures("bare", bare),
        ...loadFigures(loadBefore, loadAfter),
      },
      notes: [
        `Each server runs in its own child process (PostgreSQL pool of 10, LOG_LEVEL=warn, EMBEDDED_MQTT=false); autocannon runs in the bench process and loads them in ${rounds} alternating rounds of ${roundSeconds} s (server, then bare, in each), after a 2-s warm-up of each. BENCH_ROUNDS (≥ 5) and BENCH_ROUND_SECONDS change both.`,
        "Ratios are taken per round (the server's round against the bare round right after it) and given as the median (min–max) of the rounds; the req/s, CPU and latency figures are the medians of the rounds too.",
        "Both run the same token check (lib/identity/tokens.ts: RS256 with the built-in provider's key; a token that passed is remembered until it expires) and the same prepared device+model query.",
        "CPU µs/request is the server process's user+system time (/proc, 10-ms ticks) over a round divided by its requests: it stays meaningful on a busy machine, where req/s does not.",
        "Load average: before is when the bench started, before its own setup; after is right after the last round, so it includes the bench's own load (about 2 busy processes: the server under load and autocannon). On this 2-core machine, a 1-min load well above 2 after means other work competed for the cores.",
      ],
    };
  } finally {
    await services.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const bareAt = process.argv.indexOf("--bare-server");
  if (bareAt > 0) {
    await serveBare(Number(process.argv[bareAt + 1]));
  } else {
    await printResultAndExit(run);
  }
}
