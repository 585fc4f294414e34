/** Fuzzing one route with fast-check: the seed and count come from the environment (FUZZ_SEED, FUZZ_RUNS). */
import { randomInt } from "node:crypto";
import fc from "fast-check";
import type { Route } from "../../../lib/http/route.ts";
import { sendAndCheck } from "./check.ts";
import { requestArb } from "./request.ts";
import type { FuzzTarget } from "./target.ts";

/** Without FUZZ_SEED, `npm test` replays the same requests every time. */
const FIXED_SEED = 20261130;
const DEFAULT_RUNS = 100;

type FuzzSettings = { seed: number; runs: number };

/** FUZZ_SEED (a number, or "random"; else `unset`) and FUZZ_RUNS (requests per route). */
export function fuzzSettings(unset: "fixed" | "random" = "fixed"): FuzzSettings {
  const given = process.env.FUZZ_SEED || (unset === "random" ? "random" : String(FIXED_SEED));
  const seed = given === "random" ? randomInt(2 ** 31) : Number(given);
  const runs = Number(process.env.FUZZ_RUNS || DEFAULT_RUNS);
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(runs) || runs < 1) {
    throw new Error(`FUZZ_SEED must be an integer or "random" and FUZZ_RUNS a positive integer (got ${given}, ${process.env.FUZZ_RUNS})`);
  }
  return { seed, runs };
}

/** Runs the route's property; throws fast-check's report of the shrunk failure. */
export async function fuzzRoute(target: FuzzTarget, route: Route, { seed, runs }: FuzzSettings): Promise<void> {
  await fc.assert(
    fc.asyncProperty(requestArb(route, await target.tokens()), (request) => sendAndCheck(target, request)),
    { seed, numRuns: runs, includeErrorInReport: true },
  );
}
