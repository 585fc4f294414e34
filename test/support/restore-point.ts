/** A copy of every data table and id sequence, to put back when a test changed data it must not have changed. */
import { sql } from "drizzle-orm";
import type { TestApp } from "./app.ts";
import { dataTables } from "./envelope.ts";

const SCHEMA = "restore_point";

/** Saves the data now; the returned function puts it back exactly (rows and next ids). */
export async function saveRestorePoint(app: TestApp): Promise<() => Promise<void>> {
  const db = app.services.database.db;
  const tables = await dataTables(app);
  await db.execute(sql.raw(`drop schema if exists ${SCHEMA} cascade`));
  await db.execute(sql.raw(`create schema ${SCHEMA}`));
  for (const table of tables) await db.execute(sql.raw(`create table ${SCHEMA}."${table}" as table public."${table}"`));
  const sequences = (await db.execute(
    sql`select sequence_name as name from information_schema.sequences where sequence_schema = 'public'`,
  )) as unknown as { name: string }[];
  const positions: { name: string; last: string; called: boolean }[] = [];
  // Only the sequences of the tables put back: a table left out (events) keeps its rows, so its ids must go on.
  for (const { name } of sequences.filter((sequence) => tables.some((table) => sequence.name.startsWith(`${table}_`)))) {
    const [row] = (await db.execute(sql.raw(`select last_value::text as last, is_called as called from public."${name}"`))) as unknown as { last: string; called: boolean }[];
    positions.push({ name, ...row! });
  }
  return () =>
    db.transaction(async (tx) => {
      // Foreign keys stay unchecked while the tables are refilled in whatever order (needs a superuser, as the tests have).
      await tx.execute(sql`set local session_replication_role = replica`);
      for (const table of tables) {
        await tx.execute(sql.raw(`delete from public."${table}"`));
        await tx.execute(sql.raw(`insert into public."${table}" select * from ${SCHEMA}."${table}"`));
      }
      for (const { name, last, called } of positions) await tx.execute(sql`select setval(${`public."${name}"`}, ${last}::bigint, ${called})`);
    });
}
