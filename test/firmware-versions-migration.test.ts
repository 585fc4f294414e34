/**
 * The migration that introduced firmware versions carries data SQL of its own: a model's existing image becomes its
 * first, stable version. Checked on both databases the backend runs on (PostgreSQL and the embedded PGlite).
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { createTestDatabase } from "./support/database.ts";

const MIGRATIONS = fileURLToPath(new URL("../db/migrations", import.meta.url));
const TAG = "0002_firmware_versions";
const UPLOADED_AT = "2026-03-07T08:00:00.000Z";

/** A copy of the migrations folder whose journal stops before `TAG`: the schema as it was before versions. */
function migrationsBeforeVersions(dir: string): string {
  const folder = join(dir, "migrations");
  cpSync(MIGRATIONS, folder, { recursive: true });
  const journalFile = join(folder, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { entries: { tag: string }[] };
  const at = journal.entries.findIndex((entry) => entry.tag === TAG);
  assert.ok(at > 0, `${TAG} is in the journal`);
  writeFileSync(journalFile, JSON.stringify({ ...journal, entries: journal.entries.slice(0, at) }));
  return folder;
}

const SEED = sql.raw(`
  insert into device_models (code, name, firmware_version, firmware_file, firmware_sha256, firmware_size,
    firmware_project_name, firmware_idf_version, firmware_chip, firmware_uploaded_at)
  values ('with_fw', 'With firmware', '1.2.3', 'with_fw/${"a".repeat(64)}-0001.bin', '${"a".repeat(64)}', 4096,
    'blink', 'v5.3', 'ESP32-S2', '${UPLOADED_AT}'),
    ('bare', 'No firmware', null, null, null, null, null, null, null, null)`);

const CHECK = sql.raw(`
  select m.code, m.stable_version_id = v.id as stable, v.version, v.file, v.sha256, v.size::int as size, v.project_name,
    v.chip, v.idf_version, v.elf_sha256, v.secure_version, v.uploaded_by, v.notes, v.uploaded_at = '${UPLOADED_AT}' as uploaded_then
  from device_models m left join firmware_versions v on v.device_model_id = m.id order by m.code`);

const EXPECTED = [
  { code: "bare", stable: null, version: null, file: null, sha256: null, size: null, project_name: null, chip: null, idf_version: null, elf_sha256: null, secure_version: null, uploaded_by: null, notes: null, uploaded_then: null },
  {
    code: "with_fw",
    stable: true,
    version: "1.2.3",
    file: `with_fw/${"a".repeat(64)}-0001.bin`,
    sha256: "a".repeat(64),
    size: 4096,
    project_name: "blink",
    chip: "ESP32-S2",
    idf_version: "v5.3",
    elf_sha256: null,
    secure_version: null,
    uploaded_by: null,
    notes: null,
    uploaded_then: true,
  },
];

type Execute = (query: ReturnType<typeof sql.raw>) => Promise<unknown>;
const rowsOf = (result: unknown) => (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows).map((row) => ({ ...(row as object) }));

describe("migration to firmware versions: a model's existing image becomes its stable version", () => {
  const dir = mkdtempSync(join(tmpdir(), "iot-fw-migration-"));
  const before = migrationsBeforeVersions(dir);
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function migrateAcross(execute: Execute, migrate: (folder: string) => Promise<void>) {
    await migrate(before);
    await execute(SEED);
    await migrate(MIGRATIONS);
    assert.deepEqual(rowsOf(await execute(CHECK)), EXPECTED);
  }

  test("on PostgreSQL", async () => {
    const database = await createTestDatabase();
    const client = postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      const db = drizzlePostgres(client);
      await migrateAcross((query) => db.execute(query), (migrationsFolder) => migratePostgres(db, { migrationsFolder }));
    } finally {
      await client.end();
      await database.drop();
    }
  });

  test("on PGlite", async () => {
    const [{ PGlite }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
      import("@electric-sql/pglite"),
      import("drizzle-orm/pglite"),
      import("drizzle-orm/pglite/migrator"),
    ]);
    const client = await PGlite.create(join(dir, "pglite"));
    try {
      const db = drizzlePglite(client);
      await migrateAcross((query) => db.execute(query), (migrationsFolder) => migratePglite(db, { migrationsFolder }));
    } finally {
      await client.close();
    }
  });
});
