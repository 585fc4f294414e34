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
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (samples: number[]) => percentile(samples, 50);
