/**
 * Generators driven by a route's JSON Schema: mostly values it accepts (so that a request gets past validation and
 * its one fault reaches deeper code), sometimes values it does not. Which is which is the oracle's call, not theirs.
 */
import fc from "fast-check";
import { resolveRef, typesOf, type JsonSchema } from "../routes.ts";
import { NUMBER_SPELLINGS, PROTOTYPE_NAMES, SEEDED_IDS, SEEDED_ID_MISSPELLINGS, hugeString, jsonText, mostly, nastyString, spiked, strayName, wrongJson } from "./values.ts";

const isJsonText = (schema: JsonSchema) => /JSON text/i.test(schema.description ?? "");

function validString(schema: JsonSchema): fc.Arbitrary<string> {
  // At most 40 characters, unless the schema needs more (a 64-digit hex digest).
  const maxLength = Math.max(Math.min(schema.maxLength ?? 40, 40), schema.minLength ?? 0);
  if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern), { maxLength });
  if (isJsonText(schema)) return jsonText;
  return fc.string({ minLength: schema.minLength ?? 0, maxLength });
}

function badString(schema: JsonSchema): fc.Arbitrary<unknown> {
  const lengths = [
    ...(schema.maxLength !== undefined ? ["x".repeat(schema.maxLength + 1)] : []),
    ...(schema.minLength ? ["x".repeat(schema.minLength - 1)] : []),
  ];
  return fc.oneof(
    { weight: 3, arbitrary: spiked(validString(schema)) },
    { weight: 1, arbitrary: nastyString },
    { weight: 1, arbitrary: wrongJson },
    { weight: lengths.length ? 1 : 0, arbitrary: fc.constantFrom("", ...lengths) },
  );
}

/** A JSON value for `schema` (resolved against `document`'s $defs). */
function valueNear(schema: JsonSchema, document: JsonSchema): fc.Arbitrary<unknown> {
  const target = resolveRef(document, schema);
  // The description (e.g. "JSON text") sits beside anyOf, and applies to each alternative.
  if (target.anyOf) return fc.oneof(...target.anyOf.map((alternative) => valueNear({ description: target.description, ...alternative }, document)));
  if (target.enum) return mostly(fc.constantFrom(...target.enum), nastyString, wrongJson);
  switch (typesOf(target)[0]) {
    case "object":
      return mostly(objectNear(target, document), wrongJson);
    case "integer":
    case "number": {
      const edges = [0, -1, 1.5, 2 ** 31, 2 ** 53, 1e20, ...(target.maximum ? [target.maximum + 1] : [])];
      return mostly(fc.constantFrom(...SEEDED_IDS), fc.constantFrom(...edges, ...NUMBER_SPELLINGS), fc.integer(), wrongJson);
    }
    case "string":
      return mostly<unknown>(validString(target), badString(target));
    case "null":
      return mostly<unknown>(fc.constant(null), wrongJson);
    default:
      return fc.oneof(fc.jsonValue({ maxDepth: 2 }), nastyString);
  }
}

/** An object with its required fields mostly present, optional ones half the time, and sometimes fields nobody documents. */
export function objectNear(schema: JsonSchema, document: JsonSchema): fc.Arbitrary<Record<string, unknown>> {
  const fields = Object.entries(schema.properties ?? {}).map(([name, field]) => {
    const present = valueNear(field, document).map((value) => [name, value] as const);
    return schema.required?.includes(name) ? mostly(present, fc.constant(null)) : fc.option(present, { freq: 2, nil: null });
  });
  const strays = mostly(fc.constant<[string, unknown][]>([]), fc.array(fc.tuple(strayName, fc.oneof(wrongJson, nastyString)), { minLength: 1, maxLength: 2 }));
  // Object.fromEntries defines own properties, so a "__proto__" key stays a key (as JSON.parse makes it) instead of a prototype.
  return fc.tuple(fc.tuple(...fields), strays).map(([given, extra]) => Object.fromEntries([...given.filter((entry) => entry !== null), ...extra]));
}

/** Text for a path or query parameter that spells a value of its documented type the documented way. */
export function validUrlText(schema: JsonSchema, document: JsonSchema): fc.Arbitrary<string> {
  const target = resolveRef(document, schema);
  if (target.enum) return fc.constantFrom(...target.enum.map(String));
  const types = typesOf(target);
  if (types.includes("integer") || types.includes("number")) return fc.constantFrom(...SEEDED_IDS.map(String));
  // A date-time's pattern needs some 20 characters; instants around now, as clients send them.
  if (target.format === "date-time") {
    return fc.date({ min: new Date("2020-01-01T00:00:00Z"), max: new Date("2035-01-01T00:00:00Z"), noInvalidDate: true }).map((date) => date.toISOString());
  }
  const valid = target.pattern ? fc.stringMatching(new RegExp(target.pattern), { maxLength: 12 }) : fc.string({ maxLength: 24 });
  return target.example === undefined ? valid : fc.oneof(valid, fc.constant(String(target.example)));
}

/** Text for a path or query parameter spelled in other ways: number spellings Number() still reads, case and space variants, junk. */
export function badUrlText(schema: JsonSchema, document: JsonSchema): fc.Arbitrary<string> {
  const target = resolveRef(document, schema);
  const other = fc.oneof(nastyString, fc.constantFrom(...PROTOTYPE_NAMES));
  if (target.enum) {
    const variants = target.enum.map(String).flatMap((member) => [member.toLowerCase(), member.toUpperCase(), ` ${member}`, `${member}\u0000`]);
    return fc.oneof(fc.constantFrom(...variants), other);
  }
  const types = typesOf(target);
  if (types.includes("integer") || types.includes("number")) {
    return fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...SEEDED_ID_MISSPELLINGS) },
      { weight: 3, arbitrary: fc.constantFrom(...NUMBER_SPELLINGS) },
      fc.integer().map(String),
      other,
    );
  }
  return fc.oneof(other, hugeString);
}
