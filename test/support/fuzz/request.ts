/** One fuzzed request for a route: every part generated from the route's own declaration, with why it must fail. */
import fc from "fast-check";
import type { Route } from "../../../lib/http/route.ts";
import { jsonSchemaOf } from "../routes.ts";
import { bodyArb, type Body } from "./body.ts";
import { credentialFaults, credentialsArb, type Tokens } from "./credentials.ts";
import { noiseHeadersArb } from "./headers.ts";
import { pathFaults, queryFaults } from "./oracle.ts";
import { pathArb, queryArb } from "./url.ts";

export const BASE = "http://iot.test";

export type FuzzRequest = {
  method: string;
  /** Path and query, exactly as sent. */
  url: string;
  headers: [string, string][];
  body?: Uint8Array<ArrayBuffer>;
  /** Why the request must be rejected; empty when it may succeed. */
  faults: string[];
};

/** Readable and exact (escapes show NUL, lone surrogates and bytes that are not UTF-8); tokens by name. */
function describeRequest(request: FuzzRequest, tokens: Tokens): string {
  const named = (text: string) => text.replaceAll(tokens.admin, "<admin token>").replaceAll(tokens.device, "<device token>");
  const lines = [`${request.method} ${request.url}`, ...request.headers.map(([name, value]) => `  ${name}: ${JSON.stringify(named(value))}`)];
  if (request.body) lines.push(`  body (${request.body.byteLength} bytes): ${showBytes(request.body)}`);
  lines.push(`  must be rejected: ${request.faults.length ? request.faults.join("; ") : "no (may succeed)"}`);
  return lines.join("\n");
}

function showBytes(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 400);
  const more = bytes.byteLength > head.byteLength ? ` … and ${bytes.byteLength - head.byteLength} more bytes` : "";
  try {
    return JSON.stringify(new TextDecoder("utf-8", { fatal: true }).decode(head)) + more;
  } catch {
    const text = [...head].map((byte) => (byte >= 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, "0")}`)).join("");
    return `bytes "${text}"${more}`;
  }
}

export function requestArb(route: Route, tokens: Tokens): fc.Arbitrary<FuzzRequest> {
  const paramsDocument = route.request?.params && jsonSchemaOf(route.request.params);
  const queryDocument = route.request?.query && jsonSchemaOf(route.request.query);
  const body = bodyArb(route) ?? fc.constant(undefined);
  return fc
    .record({
      path: pathArb(route),
      query: queryArb(route),
      credentials: credentialsArb(tokens, route.access),
      noise: noiseHeadersArb(route.method),
      body: body as fc.Arbitrary<Body | undefined>,
    })
    .map(({ path, query, credentials, noise, body }) => {
      const url = new URL(`${path}${query ? `?${query}` : ""}`, BASE);
      const headers: [string, string][] = [...noise];
      if (credentials.authorization !== undefined) headers.push(["authorization", credentials.authorization]);
      if (credentials.cookie !== undefined) headers.push(["cookie", credentials.cookie]);
      if (body?.contentType !== undefined) headers.push(["content-type", body.contentType]);
      const request: FuzzRequest = {
        method: route.method,
        url: `${url.pathname}${url.search}`,
        headers,
        body: body?.bytes,
        faults: [
          ...credentialFaults(route.access, credentials),
          ...pathFaults(route.path, url.pathname, paramsDocument),
          ...queryFaults(url.searchParams, queryDocument),
          ...(body?.faults ?? []),
        ],
      };
      return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request, tokens) });
    });
}
