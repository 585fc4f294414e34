/** Building blocks of bad input: number spellings, prototype names, strings that UTF-8 or PostgreSQL cannot hold. */
import fc from "fast-check";

/**
 * Mostly `valid`, one time in seven one of `bad`: with a handful of parts per request, most requests then have no
 * fault or one, and so get past the checks in front of the code under the one that is wrong. Shrinks towards valid.
 */
export const mostly = <T>(valid: fc.Arbitrary<T>, ...bad: fc.Arbitrary<T>[]): fc.Arbitrary<T> =>
  fc.oneof({ withCrossShrink: true }, { weight: 6, arbitrary: valid }, { weight: 1, arbitrary: fc.oneof(...bad) });

/**
 * The fuzz target seeds two models and two devices, so these ids exist in both tables: a parser that reads "0b1"
 * or "+1" as 1 hits a real row instead of answering 404.
 */
export const SEEDED_IDS = [1, 2];

/** Spellings of the seeded ids that are not decimal integers but that JavaScript's Number() reads as 1 or 2. */
export const SEEDED_ID_MISSPELLINGS = ["0b1", "0x2", "0o1", "0B10", "0X1", "+1", " 1", "1 ", "\t2", "2\n", "1e0", "2E0", "1.0", "1.", ".1e1"];

/** Number spellings at and beyond the edges: zero, signs, the int4 and safe-integer limits, non-ASCII digits. */
export const NUMBER_SPELLINGS = [
  ...SEEDED_ID_MISSPELLINGS, "-0", "0", "-1", "01", "1_0", "\uff11", "Infinity", "NaN", "2147483647", "2147483648", "4294967297",
  "9007199254740993", "99999999999999999999", "1e309", "",
];

export const PROTOTYPE_NAMES = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf"];

/** Names no schema documents: prototype names, names handlers may read without documenting them (the login callback's), any. */
export const strayName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
  { weight: 2, arbitrary: fc.constantFrom("code", "state", "error", "redirect", "id") },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);

/** A lone UTF-16 surrogate: valid in a JavaScript string, not encodable as UTF-8. */
const loneSurrogate = fc.oneof(fc.integer({ min: 0xd800, max: 0xdbff }), fc.integer({ min: 0xdc00, max: 0xdfff })).map((unit) => String.fromCharCode(unit));

/** A character that breaks a layer below: NUL, a lone surrogate, a byte-order mark, a bidi override, odd line ends. */
const spike = fc.oneof(
  { weight: 2, arbitrary: fc.constant("\u0000") },
  { weight: 2, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constantFrom("\ufeff", "\u202e", "\u0085", "\u2028") },
);

/** `text` with a spike put in somewhere. */
export const spiked = (text: fc.Arbitrary<string>) =>
  fc.tuple(text, spike, fc.nat()).map(([value, bad, at]) => value.slice(0, at % (value.length + 1)) + bad + value.slice(at % (value.length + 1)));

const spikedString = spiked(fc.string({ maxLength: 16 }));

export const hugeString = fc.constantFrom(1025, 65_537, 300_001).map((length) => "x".repeat(length));

/** Strings worth sending wherever a string goes. */
export const nastyString = fc.oneof(
  fc.constantFrom(...NUMBER_SPELLINGS, ...PROTOTYPE_NAMES, "null", "undefined", "true", "[]", "{}", "'", '"', "\\", "../..", "%00", "%zz"),
  spikedString,
  fc.string({ unit: "binary", maxLength: 24 }),
  hugeString,
);

/** JSON values of every type, for fields that expect a different one. */
export const wrongJson = fc.constantFrom<unknown>(0, -1, 1.5, 1e308, 2 ** 31, 2 ** 53 + 2, true, false, null, [], {}, [1], { id: 1 }, "1", "");

/** Header text: Latin-1 without CR, LF and NUL (fetch refuses those before anything is sent). */
const headerChar = fc
  .integer({ min: 0x09, max: 0xff })
  .filter((code) => code !== 0x0a && code !== 0x0d)
  .map((code) => String.fromCharCode(code));
export const headerJunk = fc.oneof(
  fc.constantFrom("", " ", ",", ";", "=", '"', "\u00ff\u00fe", "\t", "a".repeat(8192)),
  fc.string({ unit: headerChar, maxLength: 40 }),
);

/** Invalid UTF-8: a lone continuation byte, an overlong slash, a surrogate half, a cut sequence, 0xFF. */
export const invalidUtf8 = fc.constantFrom([0xff], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]);

/** The config fields the backend copies into columns of their own (CONTRACT §2). */
const CONFIG_FIELDS = ["deviceName", "deviceEntityId", "enableOTA"];

/** JSON Schemas that are valid JSON but hard on a validator: reference loops, remote references, ids, bad patterns, depth. */
const TRICKY_SCHEMAS = [
  '{"$ref": "#"}',
  '{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}',
  '{"$ref": "http://127.0.0.1:1/schema.json"}',
  '{"$id": "http://iot.test/s.json", "type": "object"}',
  '{"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}',
  '{"$schema": "http://json-schema.org/draft-04/schema#"}',
  '{"$schema": "https://example.com/not-a-meta-schema"}',
  '{"$dynamicRef": "#meta"}',
  '{"type": "object", "properties": {"deviceName": {"type": "string", "pattern": "^(a+)+$"}}}',
  '{"pattern": "["}',
  '{"pattern": "\\\\p{Nope}"}',
  '{"format": "regex"}',
  '{"minLength": 1e400}',
  '{"maxItems": -1}',
  '{"properties": {"__proto__": {"type": "string"}}, "required": ["constructor"]}',
  `${'{"not": '.repeat(3000)}{}${"}".repeat(3000)}`,
];

/** Text for fields documented as JSON text: any JSON, config-like objects with nasty values, tricky JSON Schemas. */
export const jsonText = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)),
  fc
    .array(fc.tuple(fc.oneof(fc.constantFrom(...CONFIG_FIELDS), strayName), fc.oneof(nastyString, wrongJson)), { maxLength: 3 })
    .map((entries) => JSON.stringify(Object.fromEntries(entries))),
  fc.constantFrom(...TRICKY_SCHEMAS),
);
