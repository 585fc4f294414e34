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

/** The p-th percentile (0–100, nearest rank) of some samples. */
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

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (samples: number[]) => percentile(samples, 50);
