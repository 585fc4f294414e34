/**
 * Runs the project's entry points (server.ts, cli.ts) as real child processes through tsx, so the tests exercise
 * exactly what `node dist/...` runs without depending on a fresh build; or an entry under another runtime (bun).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ADMIN_TOKEN } from "./tokens.ts";

export const PROJECT_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TSX = import.meta.resolve("tsx");

/** Only what node needs: no DATABASE_URL, MQTT_URL, … leaks in from the test runner's environment. */
/**
 * What every server process a test starts needs, inside bareEnv: its database, where it listens and is reached, the
 * admin token, the key its secrets are sealed with (replicas must share one) and its data directory.
 */
export const serverProcessEnv = (options: { databaseUrl: string; port: number; baseUrl: string; secretKey: string; dataDir: string }) => ({
  DATABASE_URL: options.databaseUrl,
  HOST: "127.0.0.1",
  PORT: String(options.port),
  BASEURL: options.baseUrl,
  ADMIN_API_TOKEN: ADMIN_TOKEN,
  SECRET_ENCRYPTION_KEY: options.secretKey,
  DATA_DIR: options.dataDir,
});

export const bareEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/tmp",
  ...extra,
});

export type Child = {
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout, or rejects after `timeoutMs` (with the output so far). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (a signal counts as null), or rejects after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<number | null>;
  /** Kills the process if it is still running (cleanup). */
  kill(): void;
};

type Entry = "server.ts" | "cli.ts" | "test/support/crashing-server.ts" | "test/support/bun-server.ts";

/** Runs `entry` with node and tsx, or with `runtime` (a command that runs TypeScript itself, such as bun). */
export function runEntry(entry: Entry, args: string[], options: { cwd: string; env: Record<string, string>; runtime?: string }): Child {
  const runtime = options.runtime ? [] : ["--import", TSX];
  const child = spawn(options.runtime ?? process.execPath, [...runtime, `${PROJECT_ROOT}${entry}`, ...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const describe = () => `\n--- stdout ---\n${out}\n--- stderr ---\n${err}`;

  return {
    process: child,
    stdout: () => out,
    stderr: () => err,
    async waitForOutput(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = out.match(pattern);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited before printing ${pattern}${describe()}`);
        if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms${describe()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async exited(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms${describe()}`)), timeoutMs);
      });
      try {
        return await Promise.race([exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
