/**
 * Migration 0011: the device search's trigram indexes where pg_trgm can be created (PostgreSQL with its contrib, and
 * the embedded PGlite), and every migration still applied, without them, where it cannot.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { sql as query } from "drizzle-orm";
import postgres from "postgres";
import { openDatabase, openPostgres } from "../db/client.ts";
import { createTestDatabase, TEST_POSTGRES_URL } from "./support/database.ts";
import { MIGRATION_COUNT, MIGRATIONS, testMigrationAcross } from "./support/migrations.ts";
import { bareEnv, runEntry } from "./support/process.ts";

const SEARCH_INDEXES = ["devices_key_trgm_idx", "devices_name_trgm_idx"];
const noTimeouts = { DATABASE_CONNECT_TIMEOUT_MS: 5000, DATABASE_STATEMENT_TIMEOUT_MS: 0, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: 0, DATABASE_POOL_WAIT_MS: 5000 };

const SEARCH_INDEXES_QUERY = "select indexname as name from pg_indexes where tablename = 'devices' and indexname like '%trgm%' order by 1";
const searchIndexes = async (sql: postgres.Sql) => (await sql.unsafe<{ name: string }[]>(SEARCH_INDEXES_QUERY)).map((row) => row.name);

describe("the device search's indexes (migration 0011)", () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    // Last in, first out (connections before their database), and every one even after one failed.
    const failures: unknown[] = [];
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw failures[0];
  });

  /** A connection closed after the tests. */
  const connect = (url: string) => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    cleanups.push(() => sql.end());
    return sql;
  };

  /** Every migration of the journal is recorded as applied, and the search indexes are `indexes`. */
  async function assertMigrated(sql: postgres.Sql, indexes: string[]) {
    const [{ applied }] = await sql<[{ applied: number }]>`select count(*)::int as applied from drizzle.__drizzle_migrations`;
    assert.equal(applied, MIGRATION_COUNT);
    assert.deepEqual(await searchIndexes(sql), indexes);
  }

  /** A fresh database owned by a role of its own that is not a superuser, as a managed PostgreSQL hands one out. */
  async function ownedDatabase() {
    const database = await createTestDatabase();
    const role = `iot_owner_${randomBytes(4).toString("hex")}`;
    const admin = postgres(TEST_POSTGRES_URL, { max: 1, onnotice: () => {} });
    cleanups.push(async () => {
      await database.drop();
      await admin.unsafe(`drop role if exists ${role}`);
      await admin.end();
    });
    const name = new URL(database.url).pathname.slice(1);
    await admin.unsafe(`create role ${role} login; alter database ${name} owner to ${role}`);
    const url = new URL(database.url);
    url.username = role;
    return { superuserUrl: database.url, url: url.toString() };
  }

  async function migrateAs(url: string) {
    const handle = openPostgres(url, { max: 1 });
    try {
      return await handle.migrate();
    } finally {
      await handle.close();
    }
  }

  test("on PostgreSQL, migrated by the database's owner (not a superuser): pg_trgm and both indexes, no warning", async () => {
    const { url } = await ownedDatabase();
    assert.deepEqual(await migrateAs(url), []);
    await assertMigrated(connect(url), SEARCH_INDEXES);
  });

  test("pg_trgm installed earlier in a schema the owner may not use: every migration applied without the indexes, with a warning", async () => {
    const { superuserUrl, url } = await ownedDatabase();
    await connect(superuserUrl).unsafe("create schema locked; create extension pg_trgm schema locked");
    const warnings = await migrateAs(url);
    assert.deepEqual(warnings, ["pg_trgm is not usable here (permission denied for schema locked); device search works without its index, slower on large fleets"]);
    await assertMigrated(connect(url), []);
  });

  test("pg_trgm installed earlier in a schema outside the search path: both indexes, on its operator class", async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const sql = connect(database.url);
    await sql.unsafe("create schema extensions; create extension pg_trgm schema extensions");
    assert.deepEqual(await migrateAs(database.url), []);
    await assertMigrated(sql, SEARCH_INDEXES);
    const [{ definition }] = await sql<[{ definition: string }]>`select indexdef as definition from pg_indexes where indexname = 'devices_key_trgm_idx'`;
    assert.match(definition, /USING gin \(key extensions\.gin_trgm_ops\)/);
  });

  test("on the embedded PGlite: both indexes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iot-search-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const handle = await openDatabase({ DATA_DIR: dir, ...noTimeouts });
    try {
      assert.deepEqual(await handle.migrate(), []);
      const result = (await handle.db.execute(SEARCH_INDEXES_QUERY)) as unknown as { rows: { name: string }[] };
      assert.deepEqual(result.rows.map((row) => row.name), SEARCH_INDEXES);
    } finally {
      await handle.close();
    }
  });

  test("where the database refuses extensions: `migrate` applies every migration without the indexes and warns on stderr", async () => {
    const database = await createTestDatabase();
    cleanups.push(database.drop);
    const sql = connect(database.url);
    // As a managed PostgreSQL that keeps an allow-list of extensions answers.
    await sql.unsafe(`create function refuse_extensions() returns event_trigger language plpgsql as $$
      begin raise insufficient_privilege using message = 'extensions are not allowed here'; end $$;
      create event trigger refuse_extensions on ddl_command_start when tag in ('CREATE EXTENSION') execute function refuse_extensions()`);

    const dir = mkdtempSync(join(tmpdir(), "iot-search-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const child = runEntry("cli.ts", ["migrate"], { cwd: dir, env: bareEnv({ DATABASE_URL: database.url, DATA_DIR: join(dir, "data") }) });
    try {
      assert.equal(await child.exited(60_000), 0, child.stderr());
    } finally {
      child.kill();
    }
    assert.equal(child.stdout(), "migrations applied (postgres)\n");
    assert.equal(child.stderr(), "warning: pg_trgm could not be created (extensions are not allowed here); device search works without its index, slower on large fleets\n");
    await assertMigrated(sql, []);
  });

  test("a PGlite without the extension: every migration applied, without the indexes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iot-search-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const client = await PGlite.create(join(dir, "pglite"));
    try {
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS });
      const applied = await client.query<{ n: number }>("select count(*)::int as n from drizzle.__drizzle_migrations");
      assert.equal(applied.rows[0]!.n, MIGRATION_COUNT);
      assert.deepEqual((await client.query(SEARCH_INDEXES_QUERY)).rows, []);
    } finally {
      await client.close();
    }
  });

  describe("an index of the same name added by hand before the migration is kept", () => {
    testMigrationAcross(
      "0011_device_search",
      async (execute) => {
        await execute(query`create extension if not exists pg_trgm`);
        await execute(query`create index devices_key_trgm_idx on devices using gin (key gin_trgm_ops)`);
      },
      async (execute) => {
        assert.deepEqual((await execute(query.raw(SEARCH_INDEXES_QUERY))).map((row) => row.name), SEARCH_INDEXES);
      },
    );
  });
});
