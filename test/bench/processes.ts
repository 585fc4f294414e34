/** Child processes the benches start and measure: the servers under test and what they are compared with. */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { generateFernetKey } from "../../lib/secrets.ts";

const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system, every thread) a process and its child processes (nginx's workers) have used so far,
 * in ms: less skewed than wall time when other work shares the cores.
 */
export function cpuMillis(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND + children.reduce((sum, child) => sum + cpuMillis(child), 0);
}

/** Resident memory of a process now, in bytes. */
export const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

/** Waits until something answers HTTP at `url` (any status); fails if `child` exits first or after 30 s. */
export async function waitUntilListening(url: string, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with ${child.exitCode}`);
    try {
      await (await fetch(url, { signal: AbortSignal.timeout(500) })).arrayBuffer();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing answered at ${url}`);
}

/** Stops a child with `signal` (SIGKILL after 10 s) and waits for it to exit. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

export const BENCH_ADMIN_TOKEN = "bench-admin-token-0123456789";

/**
 * The settings every bench's server runs with: its own database and data directory, quiet logs, no timer, no embedded
 * MQTT broker (port 1883 may be taken by Mosquitto or another server; a bench that needs MQTT sets MQTT_URL).
 */
export const benchServerEnv = (options: { databaseUrl: string; dataDir: string; baseUrl: string }) => ({
  DATABASE_URL: options.databaseUrl,
  DATA_DIR: options.dataDir,
  SECRET_ENCRYPTION_KEY: generateFernetKey(),
  ADMIN_API_TOKEN: BENCH_ADMIN_TOKEN,
  BASEURL: options.baseUrl,
  HOST: "127.0.0.1",
  LOG_LEVEL: "warn",
  ROTATION_SCHEDULER: "external",
  EMBEDDED_MQTT: "false",
});
