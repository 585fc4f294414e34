/** Request bodies for a route, from its documented media types and schemas, with the faults the oracle finds in them. */
import fc from "fast-check";
import type { Route } from "../../../lib/http/route.ts";
import { buildImage } from "../firmware-image.ts";
import { jsonSchemaOf, resolveRef, type JsonSchema } from "../routes.ts";
import { objectNear } from "./from-schema.ts";
import { contentTypeArb } from "./headers.ts";
import { formBodyFaults, jsonBodyFaults, mediaTypeFaults } from "./oracle.ts";
import { encodeQueryPart } from "./url.ts";
import { PROTOTYPE_NAMES, invalidUtf8, mostly, nastyString, wrongJson } from "./values.ts";

export type Body = { contentType?: string; bytes: Uint8Array<ArrayBuffer>; faults: string[] };

const utf8 = (text: string) => new TextEncoder().encode(text);

/** The text's bytes with invalid UTF-8 put after its `nth` quote (so mostly inside a key or a value: the JSON stays JSON). */
function spliced(text: string, bad: readonly number[], nth: number): Uint8Array<ArrayBuffer> {
  const quotes = [...text.matchAll(/"/g)].map((match) => match.index + 1);
  const at = quotes.length ? quotes[nth % quotes.length]! : 0;
  return Uint8Array.from([...utf8(text.slice(0, at)), ...bad, ...utf8(text.slice(at))]);
}

const encoded = (text: fc.Arbitrary<string>) =>
  fc
    .tuple(text, mostly<readonly [readonly number[], number] | null>(fc.constant(null), fc.tuple(invalidUtf8, fc.nat())))
    .map(([value, bad]) => (bad ? spliced(value, ...bad) : utf8(value)));

const contentTypeFor = (documented: string) => mostly<string | undefined>(fc.constant(documented), contentTypeArb, fc.constant(undefined));

const brokenJson = fc.constantFrom("", " \n", "{", '{"code": ', "nul", "{'a': 1}", '{"a": 1} trailing', "\ufeff{}", "[".repeat(5000) + "]".repeat(5000));
const tooLarge = `{"name": "${"x".repeat(1024 * 1024)}"}`;

function jsonBody(document: JsonSchema): fc.Arbitrary<Body> {
  const value = mostly<unknown>(objectNear(resolveRef(document), document), wrongJson, fc.jsonValue({ maxDepth: 3 }));
  const text = mostly(value.map((v) => JSON.stringify(v)), brokenJson, fc.constant(tooLarge));
  return fc.tuple(contentTypeFor("application/json"), encoded(text)).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [...mediaTypeFaults(["application/json"], contentType), ...jsonBodyFaults(bytes, document)],
  }));
}

function formBody(documented: string[], schema: JsonSchema): fc.Arbitrary<Body> {
  const text = objectNear(schema, schema).map((fields) =>
    Object.entries(fields)
      .map(([name, value]) => `${encodeQueryPart(name)}=${encodeQueryPart(typeof value === "string" ? value : JSON.stringify(value))}`)
      .join("&"),
  );
  return fc.tuple(contentTypeFor(documented[0]!), encoded(text)).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [...mediaTypeFaults(documented, contentType), ...formBodyFaults(bytes, schema)],
  }));
}

// Binary bodies in this API are firmware uploads. The fuzzer never sends a valid image: random bytes not starting with
// the image magic 0xE9, or a real image cut before its SHA-256.
const image = buildImage({ version: "fuzz", size: 1024 });
const notAnImage = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((bytes) => (bytes[0] === 0xe9 ? bytes.subarray(1) : bytes)),
  fc.nat({ max: image.length - 33 }).map((length) => image.subarray(0, length)),
);
const NOT_AN_IMAGE = "the upload is not an ESP32 application image";

const BOUNDARY = "fuzz-boundary";
const multipart = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom("file", "File", "files", "", 'fi"le', ...PROTOTYPE_NAMES), notAnImage), { minLength: 0, maxLength: 3 }),
    fc.boolean(),
    fc.constantFrom(`multipart/form-data; boundary=${BOUNDARY}`, `multipart/form-data; boundary="${BOUNDARY}"`, "multipart/form-data", "multipart/form-data; boundary=other"),
  )
  .map(([parts, closed, contentType]) => {
    const chunks = parts.flatMap(([name, bytes]) => [
      utf8(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"; filename="f.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      bytes,
      utf8("\r\n"),
    ]);
    if (closed) chunks.push(utf8(`--${BOUNDARY}--\r\n`));
    return { contentType, bytes: new Uint8Array(Buffer.concat(chunks)), faults: [NOT_AN_IMAGE] };
  });

function uploadBody(documented: string[]): fc.Arbitrary<Body> {
  const raw = fc.tuple(contentTypeFor("application/octet-stream"), notAnImage).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [...mediaTypeFaults(documented, contentType), NOT_AN_IMAGE],
  }));
  return documented.includes("multipart/form-data") ? fc.oneof(raw, multipart) : raw;
}

/** A body stored as sent whatever its bytes (a core dump): only a wrong media type or an empty body is refused. */
function opaqueBody(documented: string[]): fc.Arbitrary<Body> {
  return fc.tuple(contentTypeFor(documented[0]!), fc.uint8Array({ maxLength: 300 })).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [...mediaTypeFaults(documented, contentType), ...(bytes.length === 0 ? ["the body is empty"] : [])],
  }));
}

/** Log lines (NDJSON or a JSON array): bad lines are skipped, not refused, so only a wrong media type is a fault. */
function logLinesBody(documented: string[]): fc.Arbitrary<Body> {
  const line = mostly<unknown>(fc.record({ message: fc.oneof(fc.string(), nastyString) }, { requiredKeys: [] }), wrongJson, fc.jsonValue({ maxDepth: 2 }));
  const text = fc.oneof(
    fc.array(line, { maxLength: 20 }).map((lines) => lines.map((value) => JSON.stringify(value) ?? "").join("\n")),
    fc.array(line, { maxLength: 20 }).map((lines) => JSON.stringify(lines)),
    nastyString,
  );
  return fc.tuple(contentTypeFor(documented[0]!), encoded(text)).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [...mediaTypeFaults(documented, contentType), ...(contentType && documented.includes(contentType) && !isUtf8(bytes) ? ["the body is not UTF-8"] : [])],
  }));
}

const isUtf8 = (bytes: Uint8Array) => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
};

/** A body that the route does not read (non-GET routes without a body): whatever it is, it changes nothing. */
const ignoredBody = fc.option(
  fc.tuple(fc.option(contentTypeArb, { nil: undefined }), encoded(fc.oneof(fc.jsonValue().map((v) => JSON.stringify(v)), nastyString))).map(([contentType, bytes]) => ({
    contentType,
    bytes,
    faults: [],
  })),
  { freq: 2, nil: undefined },
);

/** The route's body arbitrary, or undefined for GET (fetch sends no body with it). */
export function bodyArb(route: Route): fc.Arbitrary<Body | undefined> | undefined {
  const { body, rawBody } = route.request ?? {};
  if (body) return jsonBody(jsonSchemaOf(body));
  if (rawBody) {
    const documented = Object.keys(rawBody.content);
    const form = rawBody.content["application/x-www-form-urlencoded"]?.schema;
    if (form) return formBody(documented, form as JsonSchema);
    if (documented.includes("application/x-ndjson")) return logLinesBody(documented);
    // Binary bodies are firmware images, checked on upload, except core dumps, which are kept as sent.
    return route.path.endsWith("/coredump") ? opaqueBody(documented) : uploadBody(documented);
  }
  return route.method === "GET" ? undefined : ignoredBody;
}
