/**
 * The fuzzer of test/fuzz.test.ts over every route with a random seed (FUZZ_SEED and FUZZ_RUNS as there), in process
 * against a real PostgreSQL and the test Keycloak: requests per second; on a failure, the seed and fast-check's report
 * (shrunk request, status, body) for each route that failed.
 */
import { fuzzRoute, fuzzSettings } from "../support/fuzz/run.ts";
import { openFuzzTarget } from "../support/fuzz/target.ts";
import { label } from "../support/routes.ts";
import type { BenchResult } from "./report.ts";

export async function run(): Promise<BenchResult> {
  const settings = fuzzSettings("random");
  const target = await openFuzzTarget();
  const failures: string[] = [];
  const started = performance.now();
  try {
    for (const route of target.app.routes) {
      await fuzzRoute(target, route, settings).catch((error: Error) => {
        const report = error.message.split("\n").filter((line) => line.trim() && !/^\s+at |^Hint:/.test(line));
        failures.push(`${label(route)}: ${report.join("\n  ")}`);
      });
    }
  } finally {
    await target.close();
  }
  const seconds = (performance.now() - started) / 1000;
  if (failures.length > 0) {
    throw new Error(`fuzzing with FUZZ_SEED=${settings.seed}: ${failures.length} of ${target.app.routes.length} routes failed\n${failures.join("\n")}`);
  }
  return {
    title: "Fuzzing every route (test/support/fuzz)",
    figures: { seed: settings.seed, routes: target.app.routes.length, "requests per route": settings.runs, requests: target.sent, "requests/s": target.sent / seconds },
    notes: [`Replay with FUZZ_SEED=${settings.seed} npm run fuzz.`],
  };
}
