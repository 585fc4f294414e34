/**
 * Migrations that carry data SQL of their own are tested across: the schema as it was before, rows as they were, then
 * every migration, on both databases the backend runs on (PostgreSQL and the embedded PGlite).
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { SQL } from "drizzle-orm";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { createPgliteClient, rowsOf } from "../../db/client.ts";
import { createTestDatabase } from "./database.ts";

export const MIGRATIONS = fileURLToPath(new URL("../../db/migrations", import.meta.url));
/** How many migrations the journal lists: what a fully migrated database has recorded as applied. */
export const MIGRATION_COUNT = (JSON.parse(readFileSync(join(MIGRATIONS, "meta", "_journal.json"), "utf8")) as { entries: unknown[] }).entries.length;

/** A copy of the migrations folder in `dir` whose journal stops before `tag`: the schema as it was before that migration. */
function migrationsBefore(dir: string, tag: string): string {
  const folder = join(dir, "migrations");
  cpSync(MIGRATIONS, folder, { recursive: true });
  const journalFile = join(folder, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { entries: { tag: string }[] };
  const at = journal.entries.findIndex((entry) => entry.tag === tag);
  assert.ok(at > 0, `${tag} is in the journal`);
  writeFileSync(journalFile, JSON.stringify({ ...journal, entries: journal.entries.slice(0, at) }));
  return folder;
}

export type Execute = (query: SQL) => Promise<Record<string, unknown>[]>;

const plainRows = (result: unknown) => rowsOf<object>(result).map((row) => ({ ...row }));

/**
 * Defines one test per database: migrates up to before `tag`, runs `seed`, applies every migration, then `check`
 * (call it inside a describe).
 */
export function testMigrationAcross(tag: string, seed: (execute: Execute) => Promise<void>, check: (execute: Execute) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), "iot-migration-"));
  const before = migrationsBefore(dir, tag);
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function across(run: (query: SQL) => Promise<unknown>, migrate: (folder: string) => Promise<void>) {
    const execute: Execute = async (query) => plainRows(await run(query));
    await migrate(before);
    await seed(execute);
    await migrate(MIGRATIONS);
    await check(execute);
  }

  test("on PostgreSQL", async () => {
    const database = await createTestDatabase();
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      const db = drizzlePostgres(client);
      await across((query) => db.execute(query), (migrationsFolder) => migratePostgres(db, { migrationsFolder }));
    } finally {
      await client.end();
      await database.drop();
    }
  });

  test("on PGlite", async () => {
    const [client, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
      createPgliteClient(join(dir, "pglite")),
      import("drizzle-orm/pglite"),
      import("drizzle-orm/pglite/migrator"),
    ]);
    try {
      const db = drizzlePglite(client);
      await across((query) => db.execute(query), (migrationsFolder) => migratePglite(db, { migrationsFolder }));
    } finally {
      await client.close();
    }
  });
}
