import { parentPort } from "node:worker_threads";
import { type ConfigCheck, configMismatch, configRefused, copiedFields, modelSchemaRefused } from "./device-config.ts";
import type { FieldError } from "./errors.ts";
import { compileSchema, validateAgainstSchema, warmUp } from "./json-schema.ts";
import { unsafeInputProblem } from "./safe-input.ts";
import type { CheckerRequest, WorkerMessage } from "./schema-checker.ts";

/** The schema worker's thread (started by lib/schema-checker.ts): answers one request at a time. */
const port = parentPort!;
const send = (message: WorkerMessage) => port.postMessage(message);

function checkSchema(request: Extract<CheckerRequest, { kind: "schema" }>): string[] {
  const compiled = compileSchema(request.schema);
  return compiled.ok ? [] : [compiled.problem];
}

function checkConfig(request: Extract<CheckerRequest, { kind: "config" }>): ConfigCheck {
  const model = `model "${request.modelCode}"`;
  const schema = request.schema === null ? null : compileSchema(request.schema);
  // From here on the (shorter) budget for checking a config applies.
  send({ id: request.id, compiled: true });
  if (schema && !schema.ok) return modelSchemaRefused(request.modelCode, schema.problem);
  let value: unknown;
  try {
    value = JSON.parse(request.config);
  } catch (error) {
    return configRefused("The config is not valid JSON.", `is not valid JSON (${(error as SyntaxError).message})`);
  }
  const unsafe = unsafeInputProblem(value, "config");
  if (unsafe) return { ok: false, message: `${unsafe.field} ${unsafe.message}.`, errors: [unsafe] };
  if (schema) {
    let errors: FieldError[];
    try {
      errors = validateAgainstSchema(schema.validate, value);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      return configRefused(
        `The config cannot be checked against the schema of ${model}.`,
        "cannot be checked: that recursed too deeply (the config nests too deeply, or the model's schema refers to itself without descending into it)",
      );
    }
    if (errors.length > 0) return configMismatch(errors);
  }
  return { ok: true, fields: copiedFields(value) };
}

warmUp();
port.on("message", (request: CheckerRequest) =>
  send({ id: request.id, result: request.kind === "schema" ? checkSchema(request) : checkConfig(request) }),
);
send({ ready: true });
