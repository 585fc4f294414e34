/** Headers besides credentials and a body's own Content-Type: none of them may turn bad input into a 5xx. */
import fc from "fast-check";
import { headerJunk } from "./values.ts";

export const contentTypeArb = fc.oneof(
  fc.constantFrom(
    "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16", "APPLICATION/JSON", "application/json;",
    " application/json ", "application/jsonx", "application/merge-patch+json", "text/json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=x", "application/octet-stream", "application/*",
    "*/*", "", ";",
  ),
  headerJunk,
);

const optional = (name: string, value: fc.Arbitrary<string>) =>
  fc.oneof({ withCrossShrink: true }, { weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: value.map((text): [string, string] => [name, text]) });

/** Noise headers. A GET also gets a stray Content-Type, and the range and conditional headers that apply to it. */
export function noiseHeadersArb(method: string): fc.Arbitrary<[string, string][]> {
  const get = method === "GET";
  return fc
    .tuple(
      optional("x-request-id", fc.oneof(fc.constantFrom("trace-1", "a".repeat(129), "<script>", "a b"), headerJunk)),
      optional("accept", fc.oneof(fc.constantFrom("*/*", "application/json", "text/html", "application/xml;q=0.9"), headerJunk)),
      get ? optional("content-type", contentTypeArb) : fc.constant(null),
      get
        ? optional(
            "range",
            fc.oneof(fc.constantFrom("bytes=0-0", "bytes=-1", "bytes=0-", "bytes=abc", "bytes=5-1", "bytes=0-1,3-4", "bytes=99999999999999999999-", "bytes=-0", "items=0-1", "bytes=0x1-0b1"), headerJunk),
          )
        : fc.constant(null),
      get ? optional("if-none-match", fc.oneof(fc.constantFrom("*", '""', 'W/"x"', '"a", "b"'), headerJunk)) : fc.constant(null),
      get ? optional("if-range", fc.oneof(fc.constantFrom('"x"', "Thu, 01 Jan 1970 00:00:00 GMT", "not a date"), headerJunk)) : fc.constant(null),
    )
    .map((headers) => headers.filter((header) => header !== null));
}
