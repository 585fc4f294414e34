import { Ajv, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { FieldError } from "./http/errors.ts";

/**
 * Device configs are validated against their model's JSON Schema. Draft 2020-12 is the default; a schema whose
 * `$schema` names draft-07 is checked as draft-07. Compiled validators are cached by schema text.
 */
const DRAFT_07 = /json-schema\.org\/draft-07\/schema/;

// Built on first use: compiling the meta-schemas costs start-up time that most processes never need.
const options = { allErrors: true, strict: false };
const withFormats = <T extends Ajv | Ajv2020>(ajv: T): T => {
  addFormats.default(ajv);
  return ajv;
};
let draft2020: Ajv2020 | undefined;
let draft07: Ajv | undefined;
const ajvFor = (isDraft07: boolean): Ajv | Ajv2020 =>
  isDraft07 ? (draft07 ??= withFormats(new Ajv(options))) : (draft2020 ??= withFormats(new Ajv2020(options)));

const cache = new Map<string, ValidateFunction>();
const CACHE_LIMIT = 200;

/** Parses and compiles a JSON Schema given as text; returns the problems, or an empty list when it is valid. */
export function checkJsonSchema(text: string): string[] {
  try {
    compile(text);
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

/** Validates a config value against a schema text (already checked with checkJsonSchema). */
export function validateAgainstSchema(schemaText: string, value: unknown): FieldError[] {
  const validate = compile(schemaText);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => ({
    field: `config${error.instancePath.replaceAll("/", ".")}`,
    message: error.message ?? "is not valid",
  }));
}

function compile(text: string): ValidateFunction {
  const cached = cache.get(text);
  if (cached) return cached;
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch {
    throw new Error("config_schema is not valid JSON");
  }
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    if (typeof schema !== "boolean") throw new Error("config_schema must be a JSON object (a JSON Schema)");
  }
  const ajv = ajvFor(typeof schema === "object" && schema !== null && DRAFT_07.test(String((schema as { $schema?: unknown }).$schema)));
  if (!ajv.validateSchema(schema as object)) {
    throw new Error(`config_schema is not a valid JSON Schema: ${ajv.errorsText(ajv.errors, { dataVar: "schema" })}`);
  }
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as object);
  } catch (error) {
    throw new Error(`config_schema cannot be used: ${(error as Error).message}`);
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(text, validate);
  return validate;
}
