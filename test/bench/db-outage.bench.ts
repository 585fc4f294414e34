/**
 * Issue 10 (hardening): how the server answers while its database is out. The server runs in this process on the
 * real PostgreSQL behind test/support/database-proxy.ts, which refuses connections (a stopped server) or freezes
 * them (a SIGSTOPped one). Per outage: the first API request, /api/health, a burst of concurrent requests, then
 * the time until requests succeed again after the database is back. Median of RUNS outages of each kind.
 * Targets: 503 within ~3 s, health within 2 s.
 *
 *   node --import tsx test/bench/db-outage.bench.ts                          (PostgreSQL on 127.0.0.1:5432)
 */
import { createLogger } from "../../lib/logger.ts";
import { ADMIN_TOKEN } from "../support/app.ts";
import { createTestDatabase } from "../support/database.ts";
import { startDatabaseProxy } from "../support/database-proxy.ts";
import { startTestServer } from "../support/server.ts";
import { waitFor } from "../support/wait.ts";
import { isMain, median, printResultAndExit, type BenchResult } from "./report.ts";

const RUNS = 3;
const BURST = 20;
/** A request still open after this long counts as hanging; the figure then reads "≥ CAP". */
const CAP_MS = 15_000;

type Answer = { ms: number; status: number | "no answer" };

export async function run(): Promise<BenchResult> {
  const database = await createTestDatabase();
  const proxy = await startDatabaseProxy(database.url);
  let logLines = 0;
  const logger = createLogger("warn", {}, () => logLines++);
  const server = await startTestServer({ databaseUrl: proxy.url, env: { MQTT_URL: "" }, overrides: { logger } });
  const timed = async (path: string): Promise<Answer> => {
    const started = performance.now();
    try {
      const response = await fetch(server.url + path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(CAP_MS) });
      await response.arrayBuffer();
      return { ms: performance.now() - started, status: response.status };
    } catch {
      return { ms: performance.now() - started, status: "no answer" };
    }
  };
  const figures: BenchResult["figures"] = {};
  try {
    for (const outage of ["refuse", "freeze"] as const) {
      const samples: Record<string, number[]> = { first: [], health: [], burst: [], recovery: [] };
      const statuses = new Set<string>();
      for (let run = 0; run < RUNS; run++) {
        // Several pooled connections open, as on a server in use.
        await Promise.all(Array.from({ length: 10 }, () => timed("/api/device-models")));
        if (outage === "refuse") await proxy.refuse();
        else proxy.freeze();
        const first = await timed("/api/device-models");
        const health = await timed("/api/health");
        const burst = await Promise.all(Array.from({ length: BURST }, () => timed("/api/device-models")));
        for (const answer of [first, health, ...burst]) statuses.add(String(answer.status));
        samples.first!.push(first.ms);
        samples.health!.push(health.ms);
        samples.burst!.push(Math.max(...burst.map((answer) => answer.ms)));
        await proxy.heal();
        const healed = performance.now();
        await waitFor("a request to succeed after the outage", async () => (await timed("/api/device-models")).status === 200, 60_000, 100);
        samples.recovery!.push(performance.now() - healed);
      }
      const show = (values: number[]) => (median(values) >= CAP_MS ? `≥ ${CAP_MS} (hangs)` : Math.round(median(values)));
      figures[`${outage}: first API request, ms`] = show(samples.first!);
      figures[`${outage}: /api/health, ms`] = show(samples.health!);
      figures[`${outage}: slowest of ${BURST} concurrent requests, ms`] = show(samples.burst!);
      figures[`${outage}: answers seen`] = [...statuses].sort().join(", ");
      figures[`${outage}: database back → first 200, ms`] = Math.round(median(samples.recovery!));
    }
    figures[`warn/error log lines, all ${2 * RUNS} outages`] = logLines;
    return {
      title: "Database outage: time to answer (medians)",
      figures,
      notes: [`${RUNS} outages of each kind; requests are abandoned after ${CAP_MS} ms`],
    };
  } finally {
    await proxy.heal();
    await server.close();
    await proxy.close();
    await database.drop();
  }
}

if (isMain(import.meta.url)) await printResultAndExit(run);
