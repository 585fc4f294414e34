/**
 * Why a request must be rejected, judged from what the route documents (its JSON Schemas and media types, as in
 * the OpenAPI document) and CONTRACT §1, never from what the server happens to do. An empty list means the
 * request may succeed: the fuzzer asserts refusals, never acceptance.
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { typesOf, resolveRef, type JsonSchema } from "../routes.ts";
import { SEEDED_IDS } from "./values.ts";

/** CONTRACT §1: JSON bodies up to 1 MiB. */
const JSON_BODY_LIMIT = 1024 * 1024;

const ajv = new Ajv2020({ strict: false, allErrors: true });
const validators = new WeakMap<JsonSchema, ValidateFunction>();

/** The schema's complaints about `value`, each as "<where>.<field> <what is wrong>". */
function schemaFaults(document: JsonSchema, value: unknown, where: string): string[] {
  let validate = validators.get(document);
  if (!validate) validators.set(document, (validate = ajv.compile(document)));
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => `${where}${error.instancePath.replaceAll("/", ".")} ${error.message}`);
}

/**
 * A parameter's text as the value its schema describes: an integer only when spelled in decimal digits (the
 * only spelling OpenAPI's `type: integer` allows in a URL), else the text itself (a string, which the schema refuses).
 */
function urlValue(text: string, schema: JsonSchema): unknown {
  const types = typesOf(schema);
  return (types.includes("integer") || types.includes("number")) && /^-?[0-9]+$/.test(text) ? Number(text) : text;
}

/** Path parameters: the pattern's segments decoded, typed and checked, and an id must name a seeded row. */
export function pathFaults(routePath: string, pathname: string, document: JsonSchema | undefined): string[] {
  if (!document) return [];
  const raw = pathname.match(new RegExp(`^${routePath.replace(/:(\w+)/g, "(?<$1>[^/]+)")}/*$`))?.groups;
  // Dot segments and the like turn the URL into another one: then it is not this route's input.
  if (!raw) return [];
  const faults: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [name, text] of Object.entries(raw)) {
    try {
      values[name] = urlValue(decodeURIComponent(text), document.properties?.[name] ?? {});
    } catch {
      faults.push(`path :${name} "${text}" is not valid percent-encoded UTF-8`);
      continue;
    }
    if (name === "id" && typeof values[name] === "number" && !SEEDED_IDS.includes(values[name])) faults.push(`path :id ${text} names no row`);
  }
  return [...faults, ...schemaFaults(document, values, "path")];
}

/**
 * Query parameters as URLSearchParams reads them: a bad value, and in a closed schema (additionalProperties: false)
 * also an unknown name or a repeated one. An open schema (the login redirect) documents that it makes do with what it gets.
 */
export function queryFaults(search: URLSearchParams, document: JsonSchema | undefined): string[] {
  if (!document) return [];
  const closed = resolveRef(document).additionalProperties === false;
  const faults: string[] = [];
  const values: Record<string, unknown> = Object.create(null);
  for (const name of new Set(search.keys())) {
    const all = search.getAll(name);
    if (closed && all.length > 1) faults.push(`query ${name} is given ${all.length} times`);
    values[name] = urlValue(all.at(-1)!, resolveRef(document, document.properties?.[name] ?? {}));
  }
  return [...faults, ...schemaFaults(document, values, "query")];
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const unstorable = (text: string) => (text.includes("\u0000") ? "U+0000" : LONE_SURROGATE.test(text) ? "a lone surrogate" : null);

/** Text no database column can keep as sent: NUL (PostgreSQL text refuses it) and lone surrogates (not UTF-8). */
function unstorableText(body: unknown): string[] {
  const faults: string[] = [];
  // A loop, not recursion: bodies may nest thousands of levels deep.
  const pending: [unknown, string][] = [[body, "body"]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [value, where] = next;
    if (typeof value === "string") {
      const problem = unstorable(value);
      if (problem) faults.push(`${where} contains ${problem}`);
    } else if (typeof value === "object" && value !== null) {
      for (const [key, inner] of Object.entries(value)) {
        const problem = unstorable(key);
        if (problem) faults.push(`a key in ${where} contains ${problem}`);
        pending.push([inner, `${where}.${key}`]);
      }
    }
  }
  return faults;
}

/** A JSON body: size, strict UTF-8, JSON syntax, the body schema, storable text. */
export function jsonBodyFaults(bytes: Uint8Array, document: JsonSchema): string[] {
  if (bytes.byteLength > JSON_BODY_LIMIT) return [`body is ${bytes.byteLength} bytes, over 1 MiB`];
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return ["body is not valid UTF-8"];
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return ["body is not JSON"];
  }
  return [...schemaFaults(document, value, "body"), ...unstorableText(value)];
}

/** A form body, read as URLSearchParams and checked against the form's schema. */
export function formBodyFaults(bytes: Uint8Array, document: JsonSchema): string[] {
  return queryFaults(new URLSearchParams(Buffer.from(bytes).toString("utf8")), document).map((fault) => fault.replace(/^query/, "form"));
}

const essence = (contentType: string) => contentType.split(";")[0]!.trim().toLowerCase();

/**
 * The Content-Type against the route's documented media types; a JSON route also takes `+json` types. A body
 * without one is raw bytes (RFC 9110 §8.3), so only a route taking application/octet-stream may accept it.
 */
export function mediaTypeFaults(documented: string[], contentType: string | undefined): string[] {
  if (contentType === undefined) return documented.includes("application/octet-stream") ? [] : ["no content type"];
  const type = essence(contentType);
  if (documented.includes(type)) return [];
  if (documented.includes("application/json") && /^application\/[\w.!#$&^+-]+\+json$/.test(type)) return [];
  return [`content type "${contentType}" is not ${documented.join(" or ")}`];
}
