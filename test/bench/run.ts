/**
 * `npm run bench [-- name …]`: builds dist/, runs every test/bench/*.bench.ts (or those whose name contains one of
 * the arguments), prints each module's figures and writes a markdown report to test/bench/results/<date>.md and
 * latest.md. A bench that throws is recorded in the report; the run goes on and exits 1 at the end.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, renameSync, writeFileSync } from "node:fs";
import { cpus, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { figuresTable, formatResult, loadAverage, type BenchModule, type BenchResult } from "./report.ts";

const benchDir = fileURLToPath(new URL(".", import.meta.url));
const resultsDir = join(benchDir, "results");
const rootDir = join(benchDir, "..", "..");

type Outcome = { file: string; seconds: number } & ({ result: BenchResult } | { error: string });

function machine(): Record<string, string> {
  const cores = cpus();
  return {
    CPU: `${cores[0]?.model.trim() ?? "unknown"} × ${cores.length}`,
    Memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    Node: process.version,
    OS: `${platform()} ${release()}`,
    // Other work on the machine skews every figure: a load above the core count means the numbers are pessimistic.
    "Load average (1/5/15 min) at start": loadAverage(),
  };
}

async function runOne(file: string): Promise<Outcome> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  process.stdout.write(`\n▶ ${file}\n`);
  try {
    const module = (await import(pathToFileURL(join(benchDir, file)).href)) as Partial<BenchModule>;
    if (typeof module.run !== "function") throw new Error("exports no run() function");
    const result = await module.run();
    process.stdout.write(formatResult(result));
    return { file, seconds: seconds(), result };
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stdout.write(`✗ ${file} failed: ${message}\n`);
    return { file, seconds: seconds(), error: message };
  }
}

function report(outcomes: Outcome[], startedAt: Date, machineAtStart: Record<string, string>): string {
  const lines = [`# Benchmarks — ${startedAt.toISOString()}`, "", "| machine | |", "|---|---|"];
  for (const [name, value] of Object.entries(machineAtStart)) lines.push(`| ${name} | ${value} |`);
  lines.push("", "Run with `npm run bench` (PostgreSQL on 127.0.0.1:5432 and a built dist/ are used).");
  for (const outcome of outcomes) {
    if ("result" in outcome) {
      lines.push("", `## ${outcome.result.title}`, "", `\`${outcome.file}\`, ${outcome.seconds.toFixed(1)} s`, "", figuresTable(outcome.result.figures));
      if (outcome.result.notes?.length) lines.push("", ...outcome.result.notes.map((note) => `- ${note}`));
    } else {
      lines.push("", `## ${outcome.file}: FAILED`, "", "```", outcome.error, "```");
    }
  }
  return lines.join("\n") + "\n";
}

function writeAtomically(path: string, text: string) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

async function main() {
  const startedAt = new Date();
  const machineAtStart = machine();
  const filters = process.argv.slice(2);
  const files = readdirSync(benchDir)
    .filter((name) => name.endsWith(".bench.ts"))
    .filter((name) => filters.length === 0 || filters.some((filter) => name.includes(filter)))
    .sort();
  if (files.length === 0) throw new Error(`no test/bench/*.bench.ts matches ${filters.join(", ") || "anything"}`);

  process.stdout.write("Building dist/ (the benches start the built server)…\n");
  execFileSync("npm", ["run", "build", "--silent"], { cwd: rootDir, stdio: "inherit" });

  const outcomes: Outcome[] = [];
  for (const file of files) outcomes.push(await runOne(file));

  const text = report(outcomes, startedAt, machineAtStart);
  // To the second: two runs started within one minute must not overwrite each other's report.
  const stamp = startedAt.toISOString().slice(0, 19).replaceAll(":", "");
  writeAtomically(join(resultsDir, `${stamp}.md`), text);
  writeAtomically(join(resultsDir, "latest.md"), text);
  const failed = outcomes.filter((outcome) => "error" in outcome).map((outcome) => outcome.file);
  process.stdout.write(`\nReport: test/bench/results/${stamp}.md (and latest.md)${failed.length ? `; FAILED: ${failed.join(", ")}` : ""}\n`);
  // Benches may leave handles (pools, timers) behind: exit explicitly.
  process.exit(failed.length > 0 ? 1 : 0);
}

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
