/**
 * The migration that introduced firmware versions carries data SQL of its own: a model's existing image becomes its
 * first, stable version.
 */
import assert from "node:assert/strict";
import { describe } from "node:test";
import { sql } from "drizzle-orm";
import { testMigrationAcross } from "./support/migrations.ts";

const UPLOADED_AT = "2026-03-07T08:00:00.000Z";

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

describe("migration to firmware versions: a model's existing image becomes its stable version", () => {
  testMigrationAcross(
    "0002_firmware_versions",
    async (execute) => void (await execute(SEED)),
    async (execute) => assert.deepEqual(await execute(CHECK), EXPECTED),
  );
});
