/**
 * Issue 10: does /oauth2/token answer an unknown client_id faster than a wrong secret (which would tell an attacker
 * which clients exist)? Both kinds of request, interleaved, through the app in this process (no sockets, so less
 * noise) on the real PostgreSQL, failure limits off. Goal: the medians differ by less than their own spread.
 *
 *   node --import tsx -e 'import("./test/bench/token-timing.bench.ts").then(async (m) => console.log(await m.run()))'
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { routesFor } from "../../functions/index.ts";
import { loadConfig } from "../../lib/config.ts";
import { createServices } from "../../lib/context.ts";
import { createApp } from "../../lib/http/app.ts";
import { createTestDatabase } from "../support/database.ts";
import { median, percentile, type BenchResult } from "./report.ts";

const WARMUP = 300;
const ROUNDS = 5000;
const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";

const micros = (value: number) => Math.round(value * 10) / 10;

export async function run(): Promise<BenchResult> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "iot-bench-"));
  const services = await createServices(
    loadConfig({
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      LOG_LEVEL: "silent",
      ADMIN_API_TOKEN: ADMIN_TOKEN,
      BASEURL: "http://bench.local",
      OAUTH2_CLIENT_FAILURE_LIMIT: "0",
      OAUTH2_ADDRESS_FAILURE_LIMIT: "0",
    }),
  );
  try {
    await services.database.migrate();
    const app = createApp(routesFor(services), services);
    const admin = (path: string, body: unknown) =>
      app(new Request(`http://bench.local${path}`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" }, body: JSON.stringify(body) }));
    const model = await (await admin("/api/device-models", { code: "timing", name: "Timing" })).json();
    const device = await (await admin("/api/devices", { device_model_id: model.id, config: "{}" })).json();
    const secret = await services.identity.getSecret(device.client_id);
    // Same length as the real id and secret, so that only existence differs.
    const unknownId = device.client_id.replace(/.{8}$/, "zzzzzzzz");
    const wrongSecret = secret.replace(/^./, (c: string) => (c === "A" ? "B" : "A"));

    async function timed(clientId: string): Promise<number> {
      const body = new URLSearchParams({ grant_type: "client_credentials", client_id: clientId, client_secret: wrongSecret });
      const request = new Request("http://bench.local/oauth2/token", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body });
      const started = performance.now();
      const response = await app(request);
      await response.arrayBuffer();
      const elapsed = (performance.now() - started) * 1000;
      if (response.status !== 401) throw new Error(`expected 401, got ${response.status}`);
      return elapsed;
    }

    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      // Interleaved, and the order flipped every round, so drift in the machine's load hits both alike.
      const unknownFirst = round % 2 === 0;
      const first = await timed(unknownFirst ? unknownId : device.client_id);
      const second = await timed(unknownFirst ? device.client_id : unknownId);
      if (round < WARMUP) continue;
      unknown.push(unknownFirst ? first : second);
      wrong.push(unknownFirst ? second : first);
    }
    // Each pair ran back to back under the same load: the median of their differences is the steadiest figure.
    const pairedDifference = median(unknown.map((value, i) => value - wrong[i]!));
    const spread = (samples: number[]) => percentile(samples, 75) - percentile(samples, 25);
    return {
      title: `/oauth2/token: unknown client_id vs wrong secret, ${ROUNDS} interleaved pairs in-process`,
      figures: {
        "unknown client_id, median µs": micros(median(unknown)),
        "wrong secret, median µs": micros(median(wrong)),
        "difference of medians µs (unknown − wrong)": micros(median(unknown) - median(wrong)),
        "median of paired differences µs (unknown − wrong)": micros(pairedDifference),
        "unknown client_id, p25–p75 spread µs": micros(spread(unknown)),
        "wrong secret, p25–p75 spread µs": micros(spread(wrong)),
      },
      notes: ["Failure limits are off here (0), so every request reaches the secret check."],
    };
  } finally {
    await services.close();
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
