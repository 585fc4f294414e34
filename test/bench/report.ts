import { loadavg } from "node:os";
import { pathToFileURL } from "node:url";
/** What every `test/bench/*.bench.ts` module returns from its exported `run()`. */
export type BenchResult = {
  title: string;
  figures: Record<string, number | string>;
  notes?: string[];
};

export type BenchModule = { run(): Promise<BenchResult> | BenchResult };

const formatValue = (value: number | string) =>
  typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1)) : value;

/** The figures as a two-column markdown table (also readable as plain text in a terminal). */
export function figuresTable(figures: BenchResult["figures"]): string {
  const rows = Object.entries(figures).map(([name, value]) => `| ${name} | ${formatValue(value).replace(/\|/g, "\\|")} |`);
  return ["| figure | value |", "|---|---:|", ...rows].join("\n");
}

/** A result as the runner and a bench run on its own print it. */
export const formatResult = (result: BenchResult) =>
  `${result.title}\n${figuresTable(result.figures)}\n${(result.notes ?? []).map((n) => `- ${n}\n`).join("")}`;

/** Whether the module at `moduleUrl` is the one node was started with (a bench run on its own). */
export const isMain = (moduleUrl: string) => Boolean(process.argv[1]) && moduleUrl === pathToFileURL(process.argv[1]!).href;

/** Runs a bench started on its own, prints its result and exits (its servers' handles would keep node alive). */
export async function printResultAndExit(run: BenchModule["run"]): Promise<never> {
  process.stdout.write(formatResult(await run()));
  process.exit(0);
}

/** The p-th percentile (0–100, nearest rank) of some samples. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (samples: number[]) => percentile(samples, 50);

export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/** "median (min–max)" of some samples, rounded to `digits` decimals. */
export const spread = (samples: number[], digits = 1) =>
  `${round(median(samples), digits)} (${round(Math.min(...samples), digits)}–${round(Math.max(...samples), digits)})`;

/** The machine's load average (1 / 5 / 15 min) now: other work on the cores skews every figure taken meanwhile. */
export const loadAverage = () => loadavg().map((load) => load.toFixed(2)).join(" / ");

/**
 * How many alternating rounds a comparing bench runs: `given` (the run() option) if set, else `BENCH_ROUNDS`, else
 * `fallback`; at least 5, so that a median of the rounds means something (an odd number has a middle round; with an
 * even one `median` takes the lower of the two middle values).
 */
export function alternatingRounds(given: number | undefined, fallback: number): number {
  const rounds = given ?? Number(process.env.BENCH_ROUNDS ?? fallback);
  if (!Number.isInteger(rounds) || rounds < 5) throw new Error(`alternating rounds must be a whole number ≥ 5 (BENCH_ROUNDS), not ${rounds}`);
  return rounds;
}

/** A positive number from the environment variable `name`, or `fallback` when it is not set. */
export function numberFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!(value > 0)) throw new Error(`${name} must be a positive number (got ${process.env[name]})`);
  return value;
}

/**
 * Per-round ratios in % of `ours` to `reference`, two series measured in the same alternating rounds (round i of one
 * beside round i of the other). `higherIsBetter` false (CPU per request, say) divides the other way, reference by
 * ours, so that above 100 % always means ours did better.
 */
export function roundRatios(ours: number[], reference: number[], higherIsBetter = true): number[] {
  if (ours.length !== reference.length) throw new Error(`rounds differ in number: ${ours.length} and ${reference.length}`);
  return ours.map((value, i) => (higherIsBetter ? value / reference[i]! : reference[i]! / value) * 100);
}

/** The figures of a ratio over the rounds: its median with the min–max, and every round's value in run order. */
export const ratioFigures = (name: string, ratios: number[]): BenchResult["figures"] => ({
  [`${name}, median (min–max) of rounds`]: spread(ratios),
  [`${name}, per round`]: ratios.map((ratio) => round(ratio)).join(", "),
});

/** The load average figures of a bench: taken when it started (`before`) and after its measured rounds (`after`). */
export const loadFigures = (before: string, after: string): BenchResult["figures"] => ({
  "load average (1 / 5 / 15 min) before": before,
  "load average (1 / 5 / 15 min) after": after,
});
