/**
 * The pool's timeouts on the real PostgreSQL (lib/config.ts DATABASE_*_MS): a statement that runs too long answers
 * 503, and what is logged about a failed query never holds its parameters; what must not be cut is not (a slow
 * firmware upload, a transaction waiting between statements, a migration waiting for the migration lock).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { MIGRATION_LOCK_ID, openPostgres } from "../db/client.ts";
import { inTransaction } from "../lib/transaction-scope.ts";
import { loadConfig } from "../lib/config.ts";
import { createLogger } from "../lib/logger.ts";
import { createTestApp, type TestApp } from "./support/app.ts";
import { createTestDatabase } from "./support/database.ts";
import { assertErrorEnvelope } from "./support/envelope.ts";
import { buildImage } from "./support/firmware-image.ts";

const STATEMENT_TIMEOUT_MS = 300;
const env = { DATABASE_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS), DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: "5000" };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("database timeouts", () => {
  let app: TestApp;
  const logLines: string[] = [];
  let modelId: number;
  let deviceId: number;

  before(async () => {
    app = await createTestApp({ env, overrides: { logger: createLogger("debug", {}, (line) => logLines.push(line)) } });
    modelId = (await (await app.call("POST", "/api/device-models", { body: { code: "timed", name: "Timed" } })).json()).id;
    const device = await app.call("POST", "/api/devices", { body: { device_model_id: modelId, config: '{"deviceName": "Before"}' } });
    deviceId = (await device.json()).id;
  });
  after(() => app.close());

  const update = (deviceName: string) => app.call("PUT", `/api/devices/${deviceId}`, { body: { config: JSON.stringify({ deviceName }) } });

  test("a statement blocked past the statement timeout answers 503; the log names the query, not its values", async () => {
    const other = postgres(app.services.config.DATABASE_URL!, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    const lock = other.begin(async (tx) => {
      await tx`select id from devices where id = ${deviceId} for update`;
      locked();
      await released;
    });
    try {
      await holding;
      const marker = "Blocked-kitchen-7f3a9c";
      const response = await update(marker);
      const envelope = await assertErrorEnvelope(response, 503, "PUT /api/devices/:id while the row is locked");
      assert.equal(envelope.code, "UPSTREAM_UNAVAILABLE");
      assert.ok(response.headers.get("retry-after"));

      const warning = logLines.map((line) => JSON.parse(line)).find((line) => line.request_id === envelope.correlationId && line.level === "warn");
      // The update reads the row it changes first, under a row lock (its audit event says which fields changed).
      assert.match(warning?.error ?? "", /^Failed query: select "config" from "devices" .* for update \(canceling statement due to statement timeout\)$/);
      assert.ok(!logLines.some((line) => line.includes(marker)), "no log line holds the parameter");
    } finally {
      release();
      await lock;
      await other.end();
    }
    assert.equal((await update("After")).status, 200);
  });

  test("a failure that is our bug is logged with its stack, and without the query's values", async () => {
    const db = app.services.database.db;
    await db.execute(sql.raw(`create function refuse_update() returns trigger language plpgsql as $$ begin raise exception 'refused by a test trigger'; end $$`));
    await db.execute(sql.raw(`create trigger refuse_update before update on devices for each row execute function refuse_update()`));
    try {
      const marker = "Trigger-garage-51be02";
      const response = await update(marker);
      assert.equal(response.status, 500);
      const body = await response.json();
      assert.equal(body.code, "INTERNAL_ERROR");
      const line = logLines.map((text) => JSON.parse(text)).find((entry) => entry.request_id === body.correlationId && entry.level === "error");
      assert.equal(line?.message, "Unhandled error");
      assert.match(line.error, /^Failed query: update "devices" set .*\(refused by a test trigger\)$/);
      assert.match(line.stack, /^\s+at /, "the stack frames, without the message");
      assert.ok(!logLines.some((text) => text.includes(marker)), "no log line holds the parameter");
    } finally {
      await db.execute(sql.raw(`drop trigger refuse_update on devices; drop function refuse_update()`));
    }
  });

  test("a firmware upload slower than the statement timeout is stored", async () => {
    const image = buildImage({ version: "slow-1.0", size: 64 * 1024 });
    const chunks = 6;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (let i = 0; i < chunks; i++) {
          controller.enqueue(image.subarray((i * image.length) / chunks, ((i + 1) * image.length) / chunks));
          await sleep((STATEMENT_TIMEOUT_MS * 4) / chunks);
        }
        controller.close();
      },
    });
    const started = performance.now();
    const response = await app.fetch(
      new Request(`http://iot.test/api/device-models/${modelId}/firmware`, {
        method: "POST",
        body,
        duplex: "half",
        headers: { authorization: `Bearer ${app.services.config.ADMIN_API_TOKEN}`, "content-type": "application/octet-stream" },
      } as RequestInit),
    );
    assert.equal(response.status, 200, await response.clone().text());
    assert.ok(performance.now() - started > STATEMENT_TIMEOUT_MS * 3);
    assert.equal((await response.json()).firmware_version, "slow-1.0");
  });

  test("a transaction may wait between its statements longer than the statement timeout", async () => {
    const count = await inTransaction(app.services.database.db, async (tx) => {
      await tx.execute(sql`select 1`);
      await sleep(STATEMENT_TIMEOUT_MS * 3);
      return (await tx.execute(sql`select count(*)::int as n from devices`)) as unknown as { n: number }[];
    });
    assert.equal(count[0]!.n, 1);
  });
});

test("migrations wait for the migration lock longer than the statement timeout, and are not cut", async () => {
  const database = await createTestDatabase();
  const config = loadConfig({ DATABASE_URL: database.url, ...env });
  const handle = openPostgres(database.url, { timeouts: config });
  const other = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    const [setting] = (await handle.db.execute(sql`show statement_timeout`)) as unknown as { statement_timeout: string }[];
    assert.equal(setting!.statement_timeout, `${STATEMENT_TIMEOUT_MS}ms`, "the pool's statement timeout is in force");
    await other`select pg_advisory_lock(${MIGRATION_LOCK_ID})`;
    const started = performance.now();
    const migrated = handle.migrate();
    await sleep(STATEMENT_TIMEOUT_MS * 4);
    await other`select pg_advisory_unlock(${MIGRATION_LOCK_ID})`;
    await migrated;
    assert.ok(performance.now() - started >= STATEMENT_TIMEOUT_MS * 4);
    const tables = (await handle.db.execute(sql`select count(*)::int as n from information_schema.tables where table_name = 'devices'`)) as unknown as { n: number }[];
    assert.equal(tables[0]!.n, 1);
  } finally {
    await other.end();
    await handle.close();
    await database.drop();
  }
});
