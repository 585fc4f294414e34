import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline/promises";
import { pathToFileURL } from "node:url";
import sade from "sade";
import { openDatabase } from "./db/client.ts";
import { ConfigError, loadConfig } from "./lib/config.ts";
import { createServices, type Services } from "./lib/context.ts";
import { createLogger, errorMessage, logFormatFor } from "./lib/logger.ts";
import { buildNvsImage, parseNvsCsv } from "./lib/provisioning/nvs.ts";
import { runRetention } from "./lib/retention.ts";
import { fleetSize, loadSampleFleet, wipeFleet } from "./lib/sample-fleet.ts";

/** Fails the command with a one-line reason (exit 1). */
class CommandFailed extends Error {}

// stdout carries only a command's result (scripts and the CronJob read it); logs and prompts go to stderr.
const toStderr = (line: string) => process.stderr.write(`${line}\n`);

async function withServices<T>(work: (services: Services) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const services = await createServices(config, { processName: "cli", logger: createLogger(config.LOG_LEVEL, {}, toStderr, logFormatFor(process.stderr, config.LOG_FORMAT)) });
  try {
    return await work(services);
  } finally {
    await services.close();
  }
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await prompt.question(`${question} [y/N] `)).trim());
  } finally {
    prompt.close();
  }
}

const parseSize = (text: string) => {
  const size = Number(text);
  if (!Number.isInteger(size)) throw new CommandFailed(`--size must be a number such as 0x4000, not "${text}"`);
  return size;
};

/** One line, because a CronJob's status and most log views show only that. */
const reasonOf = (error: unknown) =>
  (error instanceof ConfigError ? `invalid configuration: ${error.problems.join("; ")}` : errorMessage(error)).replace(/\s*\n\s*/g, " ");

function run(action: (...args: any[]) => Promise<void>) {
  return async (...args: unknown[]) => {
    try {
      await action(...args);
      process.exit(0);
    } catch (error) {
      process.stderr.write(`error: ${reasonOf(error)}\n`);
      process.exit(1);
    }
  };
}

export const cli = sade("iotsupport");

cli
  .command("migrate")
  .describe("Apply database migrations (under an advisory lock on PostgreSQL)")
  .action(
    run(async () => {
      const database = await openDatabase(loadConfig());
      try {
        for (const warning of await database.migrate()) process.stderr.write(`warning: ${warning}\n`);
        process.stdout.write(`migrations applied (${database.kind})\n`);
      } finally {
        await database.close();
      }
    }),
  );

cli
  .command("rotation-job")
  .describe("Run one credential-rotation cycle (scheduled queueing, timeouts, start next) and exit; for a CronJob")
  .action(
    run(async () => {
      await withServices(async (services) => {
        // A fresh process: give the broker connection a moment, or no device could be notified this run.
        await services.notifier.waitUntilConnected(services.config.MQTT_PUBLISH_TIMEOUT_MS);
        const summary = await services.rotation.runCycle();
        // Rollouts advance from the same CronJob (docs/rollouts.md), row-locked like the rotation.
        const rollouts = await services.rollouts.tick();
        // Printed also when due work was left undone, so the operator sees what did happen.
        process.stdout.write(`${JSON.stringify({ rotation_job: summary, rollouts_stepped: rollouts })}\n`);
        if (summary.errors.length > 0) throw new CommandFailed(summary.errors.join("; "));
      });
    }),
  );

cli
  .command("rollout-job")
  .describe("Run one step of every active firmware rollout and exit; for a CronJob of its own")
  .action(
    run(async () => {
      await withServices(async (services) => {
        await services.notifier.waitUntilConnected(services.config.MQTT_PUBLISH_TIMEOUT_MS);
        process.stdout.write(`${JSON.stringify({ rollouts_stepped: await services.rollouts.tick() })}\n`);
      });
    }),
  );

cli
  .command("retention-job")
  .describe("Delete device logs (and core dumps) beyond their age and size limits and exit; for a CronJob")
  .action(
    run(async () => {
      await withServices(async (services) => {
        process.stdout.write(`${JSON.stringify({ retention_job: await runRetention(services) })}\n`);
      });
    }),
  );

cli
  .command("load-test-data")
  .describe("Replace all models and devices with a small sample fleet (asks first)")
  .option("--yes", "Do not ask before wiping existing data", false)
  .action(
    run(async (options: { yes: boolean }) => {
      await withServices(async (services) => {
        const existing = await fleetSize(services);
        if (existing > 0 && !options.yes && !(await confirm(`This deletes ${existing} existing models and devices (and their OAuth2 clients). Continue?`))) {
          throw new CommandFailed("nothing changed: confirm with --yes to wipe existing data");
        }
        await wipeFleet(services);
        const loaded = await loadSampleFleet(services);
        process.stdout.write(`loaded ${loaded.models} device models and ${loaded.devices} devices\n`);
      });
    }),
  );

cli
  .command("nvs-image")
  .describe("Build an ESP-IDF NVS partition image (format version 2) from a CSV of string entries")
  .option("--csv", "Input CSV (key,type,encoding,value) as for Espressif's nvs_partition_gen")
  .option("--size", "Partition size, e.g. 0x4000 (a multiple of 0x1000, at least 0x3000)")
  .option("--output", "Where to write the image")
  .example("nvs-image --csv prov.csv --size 0x4000 --output prov.bin")
  .action(
    run(async (options: { csv?: string; size?: string; output?: string }) => {
      if (!options.csv || !options.size || !options.output) throw new CommandFailed("--csv, --size and --output are required");
      const image = buildNvsImage(parseNvsCsv(readFileSync(options.csv, "utf8")), parseSize(String(options.size)));
      writeFileSync(options.output, image);
      process.stdout.write(`wrote ${image.length} bytes to ${options.output}\n`);
    }),
  );

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) cli.parse(process.argv);
