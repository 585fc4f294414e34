/** Checks every error response against CONTRACT §1: the envelope, the request id, and nothing internal leaking. */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import type { TestApp } from "./app.ts";

// Words that only appear in a body when internal text leaks: SQL, stack frames, module paths.
const LEAKS: [RegExp, string][] = [
  [/\bselect\b/i, "SQL (select)"],
  [/\binsert\b/i, "SQL (insert)"],
  [/\bat (async )?[\w.<>$]+ \(|\bat (file|node):|\n\s+at /, "a stack frame"],
  [/node_modules/, "a module path"],
  [/\bstack\b/i, "a stack"],
];

export type Envelope = { error: string; code: string; details: Record<string, unknown> | null; correlationId: string };

/** Asserts the status (one of `status`), the envelope and the absence of leaks; returns the parsed envelope. */
export async function assertErrorEnvelope(response: Response, status: number | number[], label: string): Promise<Envelope> {
  const text = await response.text();
  const where = `${label} → ${response.status} ${text.slice(0, 300)}`;
  const allowed = Array.isArray(status) ? status : [status];
  assert.notEqual(response.status, 500, `500: ${where}`);
  assert.ok(allowed.includes(response.status), `expected ${allowed.join("/")}: ${where}`);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/, `JSON content type: ${where}`);
  for (const [pattern, what] of LEAKS) assert.doesNotMatch(text, pattern, `${what} in the body: ${where}`);

  const body = JSON.parse(text) as Envelope & { error_description?: string };
  // OAuth2 token errors (RFC 6749 §5.2, docs/authentication.md) carry their code in `error` and the sentence in `error_description`.
  if ("error_description" in body) assert.match(body.error, /^[a-z_]+$/, `error is an OAuth2 error code: ${where}`);
  const sentence = body.error_description ?? body.error;
  assert.equal(typeof sentence, "string", `error is a string: ${where}`);
  assert.ok(sentence.trim().length >= 5 && /\s/.test(sentence.trim()) && !sentence.includes("\n"), `error reads as a sentence: ${where}`);
  assert.match(body.code, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, `code is UPPER_SNAKE: ${where}`);
  assert.ok("details" in body, `details is present: ${where}`);
  assert.ok(body.details === null || (typeof body.details === "object" && !Array.isArray(body.details)), `details is an object or null: ${where}`);
  const requestId = response.headers.get("x-request-id");
  assert.ok(requestId, `X-Request-Id header: ${where}`);
  assert.equal(body.correlationId, requestId, `correlationId equals X-Request-Id: ${where}`);
  return body;
}

/** The tables that hold data: all but `settings`, which holds bookkeeping such as a lazily created signing key. */
export async function dataTables(app: TestApp): Promise<string[]> {
  const rows = (await app.services.database.db.execute(
    // Device logs are written in the background after a request was answered (lib/device-logs/writer.ts), and events
    // record what happened (a device's check-in too), so neither is a "change" of a request here; test/device-logs.test.ts
    // and test/events.test.ts check them. The logs' day partitions go with them.
    sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' and table_name <> 'settings'
      and table_name not like 'device_log%' and table_name <> 'events' order by 1`,
  )) as unknown as { table_name: string }[];
  return rows.map((row) => row.table_name);
}

/**
 * What the backend observes of devices rather than keeps for anybody: any authenticated device request may update it
 * (lib/device-state/seen.ts, in the background), so it is no "change" of data here. test/device-state.test.ts checks it.
 */
const OBSERVED: Record<string, string[]> = {
  devices: ["last_seen_at", "downloaded_version_id", "downloaded_at", "reported_firmware_version", "reported_elf_sha256", "ota_state", "last_state_report", "reported_at"],
};

/** Row count and content hash of every data table (observed device state aside): equal snapshots mean a request changed no data. */
export async function snapshotData(app: TestApp): Promise<Record<string, string>> {
  const perTable = (await dataTables(app)).map((table) => {
    const row = OBSERVED[table] ? `(to_jsonb(t) - array[${OBSERVED[table].map((c) => `'${c}'`).join(", ")}])::text` : "t::text";
    return `select '${table}' as name, count(*)::int as n, coalesce(md5(string_agg(${row}, '|' order by ${row})), '') as h from "${table}" t`;
  });
  const rows = (await app.services.database.db.execute(sql.raw(perTable.join(" union all ")))) as unknown as { name: string; n: number; h: string }[];
  return Object.fromEntries(rows.map((row) => [row.name, `${row.n} rows, ${row.h}`]));
}
