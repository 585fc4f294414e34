import { Ajv, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { LRUCache } from "lru-cache";
import type { FieldError } from "./errors.ts";
import { unsafeInputProblem } from "./safe-input.ts";

/**
 * Device configs are validated against their model's JSON Schema. Draft 2020-12 is the default; a schema whose
 * `$schema` names draft-07 is checked as draft-07. Compiled schemas are cached by schema text.
 * Only the schema worker (lib/schema-worker.ts) runs this: what it costs depends on admin input.
 */
const DRAFT_07 = /json-schema\.org\/draft-07\/schema/;

const options = { allErrors: true, strict: false };
const withFormats = <T extends Ajv | Ajv2020>(ajv: T): T => {
  addFormats.default(ajv);
  return ajv;
};
// These check schemas against their meta-schema and hold nothing else.
const metaDraft2020 = withFormats(new Ajv2020(options));
const metaDraft07 = withFormats(new Ajv(options));
// Each schema is compiled by an Ajv of its own (about 1 ms): an Ajv keeps every schema it compiled, so a shared
// one would grow with each schema ever saved and refuse a changed schema that kept its $id.
const compilerFor = (draft07: boolean) => {
  const compilerOptions = { ...options, validateSchema: false };
  return withFormats(draft07 ? new Ajv(compilerOptions) : new Ajv2020(compilerOptions));
};

export type CompiledSchema = { ok: true; validate: ValidateFunction } | { ok: false; problem: string };

const cache = new LRUCache<string, CompiledSchema>({ max: 200 });
// A config breaking many rules (one per array item, say) would otherwise send back, and answer, thousands.
const MAX_ERRORS = 100;

// Instances with nothing inside: a schema that overflows the stack on one of them recursed without reading input.
const PROBES = [null, true, 0, "", [], {}];

/** Compiles the meta-schemas, so that the first schema an admin saves is not charged for them. */
export function warmUp() {
  compileSchema("{}");
  compileSchema('{"$schema": "http://json-schema.org/draft-07/schema#"}');
}

/** Parses, checks and compiles a schema text: the validator, or why the schema is refused. */
export function compileSchema(text: string): CompiledSchema {
  const cached = cache.get(text);
  if (cached) return cached;
  const compiled = compileUncached(text);
  cache.set(text, compiled);
  return compiled;
}

/** Validates a value against a compiled schema; throws a RangeError when that recursed deeper than the stack allows. */
export function validateAgainstSchema(validate: ValidateFunction, value: unknown): FieldError[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).slice(0, MAX_ERRORS).map((error) => ({
    field: `config${error.instancePath.replaceAll("/", ".")}`,
    message: error.message ?? "is not valid",
  }));
}

const refused = (problem: string): CompiledSchema => ({ ok: false, problem });

function compileUncached(text: string): CompiledSchema {
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch {
    return refused("config_schema is not valid JSON");
  }
  // Checked before ajv walks it: ajv recurses, and its stack overflow has nothing to tell an admin.
  const unsafe = unsafeInputProblem(schema, "config_schema");
  if (unsafe) return refused(`${unsafe.field} ${unsafe.message}`);
  if (typeof schema !== "boolean" && (typeof schema !== "object" || schema === null || Array.isArray(schema))) {
    return refused("config_schema must be a JSON object (a JSON Schema)");
  }
  const draft07 = typeof schema === "object" && DRAFT_07.test(String((schema as { $schema?: unknown }).$schema));
  const meta = draft07 ? metaDraft07 : metaDraft2020;
  let validate: ValidateFunction;
  try {
    if (!meta.validateSchema(schema)) {
      return refused(`config_schema is not a valid JSON Schema: ${meta.errorsText(meta.errors, { dataVar: "schema" })}`);
    }
    validate = compilerFor(draft07).compile(schema);
  } catch (error) {
    if (error instanceof RangeError) return refused("config_schema cannot be used: it refers to itself too deeply to be compiled");
    return refused(`config_schema cannot be used: ${(error as Error).message}`);
  }
  if (recursesInPlace(validate)) {
    return refused(
      'config_schema refers to itself without descending into the config (as {"$ref": "#"} does): checking a config against it would never end',
    );
  }
  return { ok: true, validate };
}

function recursesInPlace(validate: ValidateFunction): boolean {
  try {
    for (const probe of PROBES) validate(probe);
    return false;
  } catch (error) {
    if (error instanceof RangeError) return true;
    throw error;
  }
}
