import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import postgres from "postgres";
import { openPostgres } from "../db/client.ts";
import { createTestDatabase } from "./support/database.ts";
import { MIGRATION_COUNT } from "./support/migrations.ts";
import { bareEnv, runEntry } from "./support/process.ts";


type TestDatabase = Awaited<ReturnType<typeof createTestDatabase>>;

/** What a migrated database holds: applied migrations, and the application tables (each once, by name). */
async function inspect(url: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [{ count }] = await sql<[{ count: number }]>`select count(*)::int as count from drizzle.__drizzle_migrations`;
    const tables = await sql<{ name: string }[]>`
      select table_name as name from information_schema.tables where table_schema = 'public' order by table_name`;
    return { applied: count, tables: tables.map((t) => t.name) };
  } finally {
    await sql.end();
  }
}

describe("migrations from several processes at once", () => {
  const databases: TestDatabase[] = [];
  const fresh = async () => {
    const database = await createTestDatabase();
    databases.push(database);
    return database;
  };
  after(async () => {
    for (const database of databases) await database.drop();
  });

  test("three handles migrating concurrently: all resolve, each migration is applied once, a second round changes nothing", async () => {
    assert.ok(MIGRATION_COUNT > 0, "the journal lists migrations");
    const database = await fresh();
    const handles = [0, 1, 2].map(() => openPostgres(database.url, { max: 2 }));
    try {
      await Promise.all(handles.map((handle) => handle.migrate()));
      const first = await inspect(database.url);
      assert.equal(first.applied, MIGRATION_COUNT);
      assert.ok(first.tables.includes("devices") && first.tables.includes("device_models"), `tables: ${first.tables.join(", ")}`);
      assert.equal(new Set(first.tables).size, first.tables.length);

      await Promise.all(handles.map((handle) => handle.migrate()));
      assert.deepEqual(await inspect(database.url), first, "a second round is a no-op");
    } finally {
      await Promise.all(handles.map((handle) => handle.close()));
    }
  });

  test("two `cli.ts migrate` processes at the same time both exit 0", async () => {
    const database = await fresh();
    const dir = mkdtempSync(join(tmpdir(), "iot-migrate-"));
    try {
      const env = bareEnv({ DATABASE_URL: database.url, DATA_DIR: join(dir, "data") });
      const children = [0, 1].map(() => runEntry("cli.ts", ["migrate"], { cwd: dir, env }));
      try {
        const codes = await Promise.all(children.map((child) => child.exited(60_000)));
        children.forEach((child, i) => {
          assert.equal(codes[i], 0, `process ${i}:\n${child.stdout()}\n${child.stderr()}`);
          assert.match(child.stdout(), /migrations applied \(postgres\)/);
        });
      } finally {
        for (const child of children) child.kill();
      }
      const state = await inspect(database.url);
      assert.equal(state.applied, MIGRATION_COUNT);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
