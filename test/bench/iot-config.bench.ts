/**
 * GET /iot/config under load: the real server (built-in provider, PostgreSQL) against a bare node:http server that
 * does the same token check (lib/identity/tokens.ts: jose, same key, tokens that passed remembered) and the same
 * prepared device query, each in a child process of its own, loaded by autocannon from this process. The ratio is
 * what the framework (adapter, router, envelope, logs, metrics) costs; the goal is ≥ 75 %.
 *
 *   npm run build && node --import tsx test/bench/iot-config.bench.ts        (PostgreSQL on 127.0.0.1:5432)
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
import { isMain, printResultAndExit, type BenchResult } from "./report.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
const BASE_URL = "http://bench.local";
const ISSUER = `${BASE_URL}/oauth2`;
const AUDIENCE = "iot-backend";
const DEVICE_CLIENT_ID = /^iotdevice-[a-z0-9_]+-[a-z0-9]{8}$/;
const CONFIG = JSON.stringify({ deviceName: "Bench sensor", deviceEntityId: "sensor.bench", enableOTA: true, interval: 30, thresholds: { low: 18.5, high: 24 } });

type Figures = { requestsPerSecond: number; p50: number; p99: number; cpuMicrosPerRequest: number; non2xx: number; errors: number };

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
type Round = { requests: number; seconds: number; p50: number; p99: number; cpuMillis: number; non2xx: number; errors: number };

async function load(target: Target, tokens: string[], seconds: number, connections: number): Promise<Round> {
  const cpuBefore = cpuMillis(target.child.pid!);
  const result = await autocannon({
    url: `http://127.0.0.1:${target.port}`,
    connections,
    duration: seconds,
    requests: tokens.map((token) => ({ method: "GET", path: "/iot/config", headers: { authorization: `Bearer ${token}` } })),
  });
  return {
    requests: result.requests.total,
    seconds: result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuMillis: cpuMillis(target.child.pid!) - cpuBefore,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function summarize(target: Target, rounds: Round[]): Figures {
  const requests = rounds.reduce((sum, round) => sum + round.requests, 0);
  const figures = {
    requestsPerSecond: requests / rounds.reduce((sum, round) => sum + round.seconds, 0),
    p50: median(rounds.map((round) => round.p50)),
    p99: median(rounds.map((round) => round.p99)),
    cpuMicrosPerRequest: (rounds.reduce((sum, round) => sum + round.cpuMillis, 0) * 1000) / requests,
    non2xx: rounds.reduce((sum, round) => sum + round.non2xx, 0),
    errors: rounds.reduce((sum, round) => sum + round.errors, 0),
  };
  process.stdout.write(
    `${target.name}: ${figures.requestsPerSecond.toFixed(0)} req/s, p50 ${figures.p50} ms, p99 ${figures.p99} ms, ${figures.cpuMicrosPerRequest.toFixed(0)} µs CPU/request\n`,
  );
  if (figures.non2xx > 0 || figures.errors > 0) throw new Error(`${target.name}: ${figures.non2xx} non-2xx answers and ${figures.errors} errors`);
  return figures;
}

/**
 * Both servers run side by side and are loaded in alternating rounds (never at once), so a change in the
 * machine's other load during the run hits both alike.
 */
async function compare(targets: [Target, Target], tokens: string[], seconds: number, connections: number, rounds = 5) {
  try {
    for (const target of targets) {
      await waitUntilListening(`http://127.0.0.1:${target.port}/`, target.child);
      await load(target, tokens, 2, connections); // warm-up: JIT, pool connections, key import
    }
    const results: [Round[], Round[]] = [[], []];
    for (let round = 0; round < rounds; round++) {
      for (const [index, target] of targets.entries()) results[index]!.push(await load(target, tokens, seconds / rounds, connections));
    }
    return [summarize(targets[0], results[0]), summarize(targets[1], results[1])] as const;
  } finally {
    await Promise.all(targets.map((target) => stopProcess(target.child)));
  }
}

export async function run(options: { seconds?: number; connections?: number; devices?: number } = {}): Promise<BenchResult> {
  const { seconds = 10, connections = 64, devices: deviceCount = 50 } = options;
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
      seconds,
      connections,
    );
    const ratio = server.requestsPerSecond / bare.requestsPerSecond;
    process.stdout.write(`ratio server/bare: ${(ratio * 100).toFixed(1)} % (goal ≥ 75 %)\n`);
    return {
      title: `GET /iot/config, ${connections} connections, ${seconds} s, ${deviceCount} devices: server vs bare node:http`,
      figures: {
        "server req/s": Math.round(server.requestsPerSecond),
        "server p50 ms": server.p50,
        "server p99 ms": server.p99,
        "server CPU µs/request": Math.round(server.cpuMicrosPerRequest),
        "bare req/s": Math.round(bare.requestsPerSecond),
        "bare p50 ms": bare.p50,
        "bare p99 ms": bare.p99,
        "bare CPU µs/request": Math.round(bare.cpuMicrosPerRequest),
        "ratio % (goal ≥ 75)": Math.round(ratio * 1000) / 10,
        "CPU ratio % (bare/server µs)": Math.round((bare.cpuMicrosPerRequest / server.cpuMicrosPerRequest) * 1000) / 10,
      },
      notes: [
        "Each server runs in its own child process (PostgreSQL pool of 10, LOG_LEVEL=warn); autocannon runs in the bench process and loads them in 5 alternating rounds (p50/p99: median of the rounds).",
        "Both run the same token check (lib/identity/tokens.ts: RS256 with the built-in provider's key; a token that passed is remembered until it expires) and the same prepared device+model query.",
        "CPU µs/request is the server process's user+system time over the measured run divided by its requests: it stays meaningful on a busy machine, where req/s does not.",
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
