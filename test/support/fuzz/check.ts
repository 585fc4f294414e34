/** One fuzzed request through the app, against what holds whatever the input (CONTRACT §1). */
import { assertErrorEnvelope } from "../envelope.ts";
import { BASE, type FuzzRequest } from "./request.ts";
import type { FuzzTarget } from "./target.ts";

/** The response body for a failure message: text as it is, anything else by its size. */
function shown(response: Response, text: string): string {
  const type = response.headers.get("content-type");
  if (text === "") return "(no body)";
  return /json|text/.test(type ?? "") ? text.slice(0, 500) : `(${text.length} characters of ${type})`;
}

/** The body; of an event stream, which never ends, only its first chunk. */
async function bodyText(response: Response): Promise<string> {
  if (!/^text\/event-stream/.test(response.headers.get("content-type") ?? "")) return response.text();
  const reader = response.body!.getReader();
  const { value } = await reader.read();
  await reader.cancel();
  return new TextDecoder().decode(value);
}

/**
 * Nothing uncaught; no 5xx; a request with a fault is refused; a refused request, a request with a fault and any GET
 * change no data (nothing is rotating in the seeded data, so not even /iot/config's acknowledgement applies); every
 * error is the envelope. A valid request may change data: the target puts the seeded data back.
 */
export async function sendAndCheck(target: FuzzTarget, request: FuzzRequest): Promise<void> {
  const { method, url, headers, body, faults } = request;
  target.sent++;
  const response = await target.app.fetch(new Request(`${BASE}${url}`, { method, headers, body }));
  const text = await bodyText(response);
  const changed = await target.dataChange();
  const crashes = target.takeCrashes();
  const { status } = response;
  const problems = [
    ...crashes.map((error) => `left an uncaught error that ends the server process: ${error instanceof Error ? error.stack : String(error)}`),
    ...(status >= 500 ? [`answered ${status}`] : []),
    ...(faults.length > 0 && status < 400 ? [`accepted (${status}) although it must be rejected`] : []),
    ...(changed && (faults.length > 0 || status >= 400 || method === "GET") ? [`changed data: ${changed}`] : []),
  ];
  if (problems.length > 0) throw new Error(`${problems.join("; ")}\n  → ${status} ${shown(response, text)}`);
  if (status >= 400) await assertErrorEnvelope(new Response(text, { status, headers: response.headers }), status, `${method} ${url}`);
}
