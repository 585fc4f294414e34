/**
 * What counts as "the database is unavailable" (503 naming the database, logged once per outage): real failures of
 * the driver and of PostgreSQL, against a socket failure of another service, which fails with the same codes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "drizzle-orm";
import { openPostgres, type DatabaseHandle } from "../db/client.ts";
import { isDatabaseUnavailable, isUniqueViolation } from "../lib/db-errors.ts";
import { createTestDatabase } from "./support/database.ts";
import { freePort } from "./support/server.ts";

const TIMEOUTS = {
  DATABASE_CONNECT_TIMEOUT_MS: 2_000,
  DATABASE_STATEMENT_TIMEOUT_MS: 200,
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: 5_000,
  DATABASE_POOL_WAIT_MS: 2_000,
};

const failure = async (work: () => Promise<unknown>): Promise<unknown> => {
  try {
    await work();
  } catch (error) {
    return error;
  }
  assert.fail("expected the call to fail");
};

describe("isDatabaseUnavailable", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let handle: DatabaseHandle;
  before(async () => {
    database = await createTestDatabase();
    handle = openPostgres(database.url, { max: 2, timeouts: TIMEOUTS });
  });
  after(async () => {
    await handle.close();
    await database.drop();
  });

  test("a query to a PostgreSQL that refuses the connection", async () => {
    const url = new URL(database.url);
    url.port = String(await freePort());
    const unreachable = openPostgres(url.toString(), { max: 1, timeouts: TIMEOUTS });
    try {
      const error = await failure(() => unreachable.db.execute(sql`select 1`));
      assert.equal(isDatabaseUnavailable(error), true, String(error));
    } finally {
      await unreachable.close();
    }
  });

  test("a statement cancelled at the statement timeout", async () => {
    const error = await failure(() => handle.db.execute(sql`select pg_sleep(2)`));
    assert.equal(isDatabaseUnavailable(error), true, String(error));
  });

  test("not a fetch to another service that refuses the connection", async () => {
    const port = await freePort();
    const error = await failure(() => fetch(`http://127.0.0.1:${port}/`));
    assert.equal((error as { cause?: { code?: string } }).cause?.code, "ECONNREFUSED");
    assert.equal(isDatabaseUnavailable(error), false, String(error));
  });

  test("not an error of the query itself", async () => {
    await handle.db.execute(sql`create table unique_things (name text primary key)`);
    await handle.db.execute(sql`insert into unique_things values ('one')`);
    const error = await failure(() => handle.db.execute(sql`insert into unique_things values ('one')`));
    assert.equal(isUniqueViolation(error), true);
    assert.equal(isDatabaseUnavailable(error), false, String(error));
  });
});
