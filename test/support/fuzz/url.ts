/** The path and query string of a fuzzed request, from the route's parameter schemas. */
import fc from "fast-check";
import type { Route } from "../../../lib/http/route.ts";
import { jsonSchemaOf, resolveRef, type JsonSchema } from "../routes.ts";
import { badUrlText, validUrlText } from "./from-schema.ts";
import { mostly, nastyString, strayName } from "./values.ts";

/** RFC 3986 path-segment characters other than escapes: "+1" and "0x2" reach the server as typed. */
const PATH_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
/** Query characters that keep no special meaning inside a value (so not & = + #). */
const QUERY_CHAR = /^[A-Za-z0-9\-._~!$'()*,;:@/?]$/;

const hexEscape = (bytes: number[]) => bytes.map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join("");

/** Percent-encodes what `keep` does not allow; a lone surrogate becomes its (invalid) three UTF-8-style bytes. */
function percentEncode(text: string, keep: RegExp): string {
  let out = "";
  for (const char of text) {
    const unit = char.charCodeAt(0);
    if (keep.test(char)) out += char;
    else if (char.length === 1 && unit >= 0xd800 && unit <= 0xdfff) out += hexEscape([0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)]);
    else out += encodeURIComponent(char);
  }
  return out;
}

export const encodeQueryPart = (text: string) => percentEncode(text, QUERY_CHAR);

/** Already-encoded text that no encoder produces: broken escapes, encoded digits, dot segments. */
const RAW_SEGMENTS = ["%", "%zz", "%FF", "%C0%AE", "%ED%A0%80", "%00", "%31", "%2B1", "%201", "1%2F2", "..", ".", "%2e%2e", "%2E", "1;x", "1,2", "1%3F"];
const RAW_QUERY_VALUES = ["+1", "%2B1", "%201", "1%00", "%FF", "%zz", "%", "1&x=2", "=", "OK%00", "%EF%BB%BF1"];

/** The route's path with each parameter replaced by generated text. */
export function pathArb(route: Route): fc.Arbitrary<string> {
  const names = [...route.path.matchAll(/:(\w+)/g)].map((match) => match[1]!);
  const document = route.request?.params ? jsonSchemaOf(route.request.params) : ({} as JsonSchema);
  // Half of the segments are misspelled: a path parameter is the one input of most of these routes, and the one
  // whose misreading destroys data (DELETE /api/devices/0b1 deleting device 1).
  const segment = (name: string) => {
    const schema = document.properties?.[name] ?? {};
    const encoded = (text: fc.Arbitrary<string>) => text.map((value) => percentEncode(value, PATH_CHAR));
    return fc.oneof(
      { withCrossShrink: true },
      { weight: 2, arbitrary: encoded(validUrlText(schema, document)) },
      { weight: 2, arbitrary: encoded(badUrlText(schema, document)) },
      { weight: 1, arbitrary: fc.constantFrom(...RAW_SEGMENTS) },
    );
  };
  return fc.tuple(...names.map(segment)).map((segments) => {
    let index = 0;
    return route.path.replace(/:\w+/g, () => segments[index++]!);
  });
}

/** A query string: documented parameters absent or given (sometimes twice), and sometimes names nobody documents. */
export function queryArb(route: Route): fc.Arbitrary<string> {
  const document = route.request?.query ? jsonSchemaOf(route.request.query) : undefined;
  const documented = Object.entries((document && resolveRef(document).properties) ?? {}).map(([name, schema]) => {
    const value = mostly(validUrlText(schema, document!).map(encodeQueryPart), badUrlText(schema, document!).map(encodeQueryPart), fc.constantFrom(...RAW_QUERY_VALUES));
    const given = fc.oneof(fc.constant<string[]>([]), value.map((text) => [`${name}=${text}`]));
    return mostly(given, fc.tuple(value, value).map(([first, second]) => [`${name}=${first}`, `${name}=${second}`]));
  });
  const stray = fc.tuple(strayName, nastyString).map(([name, value]) => `${encodeQueryPart(name)}=${encodeQueryPart(value)}`);
  const strays = mostly(fc.constant<string[]>([]), fc.array(stray, { minLength: 1, maxLength: 3 }));
  return fc.tuple(fc.tuple(...documented), strays).map(([given, stray]) => [...given.flat(), ...stray].join("&"));
}
