/**
 * Issue 10 (hardening): what hostile model schemas cost the built server (`node dist/server.js`, real PostgreSQL).
 * For each request: its wall time and status, the slowest /api/health answer while it ran (health is polled back
 * to back) and the event loop's longest delay meanwhile (prom-client's nodejs_eventloop_lag_max_seconds, 10 ms
 * resolution, reset by each scrape of /metrics).
 * Target: no request blocks the event loop for more than ~100 ms; a config too costly to check is a 4xx.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openPostgres } from "../../db/client.ts";
import { deviceModels } from "../../db/schema.ts";
import { generateFernetKey } from "../../lib/secrets.ts";
import { createTestDatabase } from "../support/database.ts";
import { freePort } from "../support/server.ts";
import { stopProcess, waitUntilListening } from "./processes.ts";
import { median, type BenchResult } from "./report.ts";

const HOSTILE_RUNS = 5;
const COMMON_RUNS = 200;
const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const serverScript = fileURLToPath(new URL("../../dist/server.js", import.meta.url));

const ms = (value: number) => Math.round(value);

function client(base: string) {
  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const loopMaxMs = async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    return Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)![1]) * 1000;
  };

  type Run = { status: number; wallMs: number; healthMaxMs: number; loopMaxMs: number };

  /** One request, timed, with health polled while it runs (unless `poll` is false: then health is not asked). */
  async function measure(send: () => Promise<Response>, poll: boolean): Promise<Run> {
    await loopMaxMs();
    const started = performance.now();
    let settled = false;
    const request = send().then(async (response) => {
      await response.arrayBuffer();
      settled = true;
      return { status: response.status, wallMs: performance.now() - started };
    });
    let healthMaxMs = 0;
    while (poll && !settled) {
      const asked = performance.now();
      await (await fetch(`${base}/api/health`)).arrayBuffer();
      healthMaxMs = Math.max(healthMaxMs, performance.now() - asked);
    }
    const { status, wallMs } = await request;
    return { status, wallMs, healthMaxMs, loopMaxMs: await loopMaxMs() };
  }

  async function repeat(times: number, send: () => Promise<Response>, poll = true) {
    const runs: Run[] = [];
    for (let i = 0; i < times; i++) runs.push(await measure(send, poll));
    const mid = (pick: (run: Run) => number) => ms(median(runs.map(pick)));
    const statuses = [...new Set(runs.map((run) => run.status))].join("/");
    const health = poll ? `; health ≤ ${mid((run) => run.healthMaxMs)} ms` : "";
    return `${statuses} in ${mid((run) => run.wallMs)} ms${health}; loop lag ≤ ${mid((run) => run.loopMaxMs)} ms`;
  }

  return { call, repeat };
}

export async function run(): Promise<BenchResult> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-bench-"));
  const port = await freePort();
  const server = spawn(process.execPath, [serverScript], {
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      MIGRATE_ON_START: "true",
      ADMIN_API_TOKEN: ADMIN_TOKEN,
      SECRET_ENCRYPTION_KEY: generateFernetKey(),
      HOST: "127.0.0.1",
      PORT: String(port),
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const handle = openPostgres(database.url, { max: 1 });
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitUntilListening(`${base}/api/health`, server);
    const { call, repeat } = client(base);

    // Written directly: the API refuses some of these now, but they may be stored from before.
    const modelWith = async (code: string, schema: object) =>
      (await handle.db.insert(deviceModels).values({ code, name: code, configSchema: JSON.stringify(schema) }).returning())[0]!.id;
    const deviceOf = async (modelId: number) => {
      const response = await call("POST", "/api/devices", { device_model_id: modelId, config: "{}" });
      if (response.status !== 201) throw new Error(`device of model ${modelId}: ${response.status} ${await response.text()}`);
      return ((await response.json()) as { id: number }).id;
    };
    const put = (deviceId: number, config: string) => () => call("PUT", `/api/devices/${deviceId}`, { config });

    const plain = await deviceOf(await modelWith("plain", { type: "object", properties: { deviceName: { type: "string" } } }));
    const pattern = await deviceOf(await modelWith("pattern", { properties: { name: { type: "string", pattern: "^(a+)+$" } } }));
    const unique = await deviceOf(await modelWith("unique", { properties: { list: { type: "array", uniqueItems: true } } }));
    const selfRef = await modelWith("self_ref", { $ref: "#" });

    const objects = (n: number) => JSON.stringify({ list: Array.from({ length: n }, (_, i) => ({ id: i, name: `item ${i}` })) });
    const largeConfig = JSON.stringify({ deviceName: "Kitchen", readings: Array.from({ length: 12_000 }, (_, i) => ({ at: i, value: i / 7 })) });
    const kib = (text: string) => `${Math.round(text.length / 1024)} KiB`;

    const figures = {
      "PUT /api/devices/:id, small config (common path)": await repeat(COMMON_RUNS, put(plain, '{"deviceName": "Kitchen"}'), false),
      [`PUT /api/devices/:id, ${kib(largeConfig)} config`]: await repeat(HOSTILE_RUNS, put(plain, largeConfig)),
      'pattern "^(a+)+$" vs 27 a\'s and "!"': await repeat(HOSTILE_RUNS, put(pattern, JSON.stringify({ name: `${"a".repeat(27)}!` }))),
      "uniqueItems over 5,000 objects": await repeat(HOSTILE_RUNS, put(unique, objects(5_000))),
      [`uniqueItems over 16,000 objects (${kib(objects(16_000))})`]: await repeat(HOSTILE_RUNS, put(unique, objects(16_000))),
      'a device of a stored {"$ref": "#"} model': await repeat(HOSTILE_RUNS, () => call("POST", "/api/devices", { device_model_id: selfRef, config: "{}" })),
      'saving a model with {"$ref": "#"}': await repeat(HOSTILE_RUNS, () => call("PUT", `/api/device-models/${selfRef}`, { config_schema: '{"$ref": "#"}' })),
    };
    return {
      title: "Config schemas: what hostile schemas cost the server (medians)",
      figures,
      notes: [`${HOSTILE_RUNS} runs per case, ${COMMON_RUNS} for the small config (health not polled there); one request after another.`],
    };
  } finally {
    await handle.close();
    await stopProcess(server);
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
