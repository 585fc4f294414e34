import { Worker } from "node:worker_threads";
import { type ConfigCheck, configRefused, modelSchemaRefused } from "./device-config.ts";

/**
 * Runs all work whose cost an admin controls — compiling a model's JSON Schema, parsing a device config and
 * checking it against the schema — on a worker thread under a deadline, so that no schema or config stalls the
 * server (a pattern that backtracks exponentially, uniqueItems over thousands of objects…). One request at a time;
 * one past its deadline ends the worker (terminate() stops even a running regular expression) and the next
 * request starts a fresh one.
 */
type Budgets = {
  /** For parsing, checking and compiling a schema: once per schema while the worker lives, so allowed more. */
  compileMs: number;
  /** For parsing a config and checking it against its compiled schema: every device create and update. */
  checkMs: number;
  /** The worker's heap. */
  memoryMb: number;
};

const DEFAULT_BUDGETS: Budgets = { compileMs: 5000, checkMs: 250, memoryMb: 128 };

type Job = { kind: "schema"; schema: string } | { kind: "config"; schema: string | null; config: string; modelCode: string };
export type CheckerRequest = Job & { id: number };
export type WorkerMessage = { ready: true } | { id: number; compiled: true } | { id: number; result: string[] | ConfigCheck };

type Phase = "compile" | "check";
type Pending = { request: CheckerRequest; resolve(result: string[] | ConfigCheck): void; reject(error: Error): void };

export function createSchemaChecker(budgets: Budgets = DEFAULT_BUDGETS) {
  const queue: Pending[] = [];
  let worker: Worker | null = null;
  let ready = false;
  let running: { pending: Pending; phase: Phase; deadline: NodeJS.Timeout } | null = null;
  let nextId = 0;
  let closed = false;

  function spawn() {
    const started = startWorker(budgets.memoryMb);
    // Messages and exits of a worker already given up on (past its deadline) no longer count.
    started.on("message", (message: WorkerMessage) => started === worker && onMessage(message));
    started.on("error", (error) => started === worker && onCrash(error));
    started.on("exit", (code) => started === worker && onCrash(new Error(`The schema worker exited with code ${code}.`)));
    worker = started;
    ready = false;
  }

  function pump() {
    if (closed) return;
    if (!running && queue.length > 0) {
      if (!worker) spawn();
      if (ready) {
        const pending = queue.shift()!;
        worker!.postMessage(pending.request);
        running = { pending, phase: "compile", deadline: arm("compile") };
      }
    }
    // An idle worker must not keep a CLI process alive; a busy one must, or an awaited check would be dropped.
    if (running || queue.length > 0) worker?.ref();
    else worker?.unref();
  }

  const arm = (phase: Phase) => setTimeout(() => overBudget(`longer than ${budgetOf(phase)} ms`), budgetOf(phase));
  const budgetOf = (phase: Phase) => (phase === "compile" ? budgets.compileMs : budgets.checkMs);

  function onMessage(message: WorkerMessage) {
    if ("ready" in message) {
      ready = true;
    } else if (running?.pending.request.id === message.id) {
      clearTimeout(running.deadline);
      if ("compiled" in message) {
        running = { ...running, phase: "check", deadline: arm("check") };
        return;
      }
      running.pending.resolve(message.result);
      running = null;
    }
    pump();
  }

  /** The running request took too long or too much memory: answer it as refused and drop its worker. */
  function overBudget(cost: string) {
    const { pending, phase, deadline } = running!;
    clearTimeout(deadline);
    running = null;
    void worker!.terminate();
    // Started now rather than by the next request, which would otherwise wait for it.
    spawn();
    pending.resolve(refusal(pending.request, phase, cost));
    pump();
  }

  function onCrash(error: Error & { code?: string }) {
    const startingUp = !ready;
    if (running && error.code === "ERR_WORKER_OUT_OF_MEMORY") return overBudget(`more than ${budgets.memoryMb} MB of memory`);
    worker = null;
    if (running) {
      clearTimeout(running.deadline);
      running.pending.reject(error);
      running = null;
    }
    // A worker that cannot even start would fail again at once: fail what waits instead of looping.
    if (startingUp) for (const pending of queue.splice(0)) pending.reject(error);
    pump();
  }

  function submit(job: Job): Promise<string[] | ConfigCheck> {
    if (closed) return Promise.reject(new Error("The schema checker is closed."));
    return new Promise((resolve, reject) => {
      queue.push({ request: { ...job, id: nextId++ } as CheckerRequest, resolve, reject });
      pump();
    });
  }

  return {
    /** The problems that make a schema text unusable; none when it can be a model's config_schema. */
    checkSchema: (schema: string) => submit({ kind: "schema", schema }) as Promise<string[]>,

    /** Parses a device config and checks it against its model's schema (null: the model has none). */
    checkConfig: (job: Omit<Extract<Job, { kind: "config" }>, "kind">) => submit({ kind: "config", ...job }) as Promise<ConfigCheck>,

    async close() {
      closed = true;
      if (running) clearTimeout(running.deadline);
      const error = new Error("The schema checker is closed.");
      for (const pending of [...(running ? [running.pending] : []), ...queue.splice(0)]) pending.reject(error);
      running = null;
      const stopping = worker;
      worker = null;
      await stopping?.terminate();
    },
  };
}

export type SchemaChecker = ReturnType<typeof createSchemaChecker>;

function refusal(request: CheckerRequest, phase: Phase, cost: string): string[] | ConfigCheck {
  if (request.kind === "schema") return [`config_schema is refused: checking and compiling it takes ${cost}`];
  return phase === "compile"
    ? modelSchemaRefused(request.modelCode, `compiling the model's schema takes ${cost}`)
    : configRefused(
        `Checking the config against the schema of model "${request.modelCode}" takes too long.`,
        `could not be checked against the model's schema: that takes ${cost} (a pattern that backtracks, uniqueItems over many objects, …)`,
      );
}

function startWorker(memoryMb: number): Worker {
  const options = { resourceLimits: { maxOldGenerationSizeMb: memoryMb } };
  // The bundle has dist/schema-worker.js beside its chunks. From source (tests, `npm run dev`) the worker loads
  // tsx itself: on Node 20, tsx's --import hooks only the main thread.
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./schema-worker.js", import.meta.url), options);
  const entry = JSON.stringify(new URL("./schema-worker.ts", import.meta.url).href);
  const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  return new Worker(`import(${tsx}).then((tsx) => { tsx.register(); return import(${entry}); })`, { ...options, eval: true });
}
