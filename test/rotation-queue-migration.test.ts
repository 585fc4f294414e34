/**
 * Migration 0010 moves the rotation queue from the devices' rotation_state column to rotation_queue: a device that was
 * QUEUED stays queued, in its place (oldest secret first), shows QUEUED, and no rotation.state event is made by the move.
 */
import assert from "node:assert/strict";
import { describe } from "node:test";
import { sql } from "drizzle-orm";
import { testMigrationAcross } from "./support/migrations.ts";

const SEED = [
  "insert into device_models (code, name) values ('m', 'Model')",
  `insert into devices (key, device_model_id, client_id, config, rotation_state, secret_created_at)
   select key, (select id from device_models), 'm-' || key, '{}', state::rotation_state, created::timestamptz
   from (values ('queued01', 'QUEUED', '2026-01-02T00:00:00Z'), ('queued02', 'QUEUED', '2026-01-01T00:00:00Z'),
                ('okokok01', 'OK', '2026-01-01T00:00:00Z'), ('pending1', 'PENDING', '2026-01-01T00:00:00Z'),
                ('timeout1', 'TIMEOUT', '2026-01-01T00:00:00Z')) as seed (key, state, created)`,
];

const SHOWN = sql.raw(`
  select d.key, d.rotation_state::text as "column", q.device_id is not null as queued
  from devices d left join rotation_queue q on q.device_id = d.id order by d.key`);

const QUEUE_ORDER = sql.raw(`
  select d.key from rotation_queue q join devices d on d.id = q.device_id order by q.secret_created_at asc nulls first, q.device_id`);

describe("migration to the rotation queue table: QUEUED devices stay queued", () => {
  let eventsBefore = 0;
  testMigrationAcross(
    "0010_rotation_queue",
    async (execute) => {
      for (const statement of SEED) await execute(sql.raw(statement));
      eventsBefore = Number((await execute(sql.raw("select count(*)::int as n from events")))[0]!.n);
    },
    async (execute) => {
      assert.deepEqual(await execute(SHOWN), [
        { key: "okokok01", column: "OK", queued: false },
        { key: "pending1", column: "PENDING", queued: false },
        { key: "queued01", column: "OK", queued: true },
        { key: "queued02", column: "OK", queued: true },
        { key: "timeout1", column: "TIMEOUT", queued: false },
      ]);
      assert.deepEqual(await execute(QUEUE_ORDER), [{ key: "queued02" }, { key: "queued01" }], "oldest secret first");
      const [events] = await execute(sql.raw("select count(*)::int as n from events where type = 'rotation.state'"));
      assert.equal(Number(events!.n), 0, "the move itself is no change of state");
      assert.ok(eventsBefore > 0);
      await assert.rejects(execute(sql.raw("update devices set rotation_state = 'QUEUED' where key = 'okokok01'")), (error: Error) =>
        /devices_rotation_state_not_queued/.test(String((error.cause as Error | undefined)?.message ?? error.message)),
      );
    },
  );
});
