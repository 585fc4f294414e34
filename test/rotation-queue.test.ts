/**
 * The rotation queue table (lib/rotation/queue.ts) where other work crosses it, with the interleavings forced by real
 * row locks on the real PostgreSQL: a device deleted while the fleet is being queued, a queue row that queueing the
 * fleet leaves to a device being started at the same moment, and faults in the fleet's queueing (from the trigger, the
 * schedule, and in a later key range).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { eq } from "drizzle-orm";
import postgres from "postgres";
import { devices, rotationQueue, settings } from "../db/schema.ts";
import { errorMessage } from "../lib/logger.ts";
import type { Notifier } from "../lib/mqtt.ts";
import { queueAllOk } from "../lib/rotation/schedule.ts";
import { createFleet, deviceRow, expireNow, statesOf } from "./support/fleet.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

describe("the rotation queue crossed by other work", () => {
  let server: TestServer;
  let other: postgres.Sql;
  // Connected and acknowledging every notice: nothing here depends on a device answering.
  const notifier: Notifier = { state: () => "connected", waitUntilConnected: async () => true, publish: async () => true, close: async () => {} };
  before(async () => {
    server = await startTestServer({ overrides: { notifier } });
    other = postgres(server.databaseUrl, { max: 1, onnotice: () => {} });
  });
  after(async () => {
    await other?.end();
    await server?.close();
  });

  const db = () => server.services.database.db;
  const queueRows = async () => (await db().select().from(rotationQueue)).map((row) => row.deviceId).sort((a, b) => a - b);
  const reset = async () => {
    await db().delete(rotationQueue);
    await db().update(devices).set({ rotationState: "OK", rotationStartedAt: null });
  };

  test("a device deleted while the fleet is queued: the trigger queues the others instead of failing", async () => {
    await reset();
    const fleet = await createFleet(server, 4);
    const gone = fleet[2]!;
    // The delete holds the device's row until it commits; the fleet's insert has read the device by then and waits
    // to check its queue row against it, then finds it deleted.
    let deleted!: () => void;
    const isDeleted = new Promise<void>((resolve) => (deleted = resolve));
    const deleting = other.begin(async (tx) => {
      await tx`delete from devices where id = ${gone.id}`;
      deleted();
      await waitFor("the trigger to wait on the deleted row", async () => {
        const [row] = await tx`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
        return row!.n > 0;
      });
    });
    await isDeleted;
    const triggered = server.admin("POST", "/api/rotation/trigger");
    await deleting;
    const response = await triggered;
    assert.equal(response.status, 200, await response.clone().text());
    const stillThere = fleet.filter((device) => device.id !== gone.id);
    // Every remaining device was queued (the first of them is started at once).
    assert.deepEqual(await response.json(), { queued_count: (await db().select().from(devices)).length });
    const shown = await Promise.all(stillThere.map(async (device) => (await deviceRow(server, device.id)).rotationState));
    assert.deepEqual(shown.filter((state) => state === "QUEUED").length + shown.filter((state) => state === "PENDING").length, stillThere.length);
    assert.ok(!(await queueRows()).includes(gone.id));
  });

  test("a queue row left to a device that started meanwhile: it times out TIMEOUT, not QUEUED, with one event", async () => {
    await reset();
    const [device] = await createFleet(server, 1);
    await server.admin("POST", `/api/devices/${device!.id}/rotate`);
    assert.equal((await deviceRow(server, device!.id)).rotationState, "PENDING");
    // What queueing the fleet leaves when it read the device before its start and inserted after the start removed the
    // row: a PENDING device with a queue row. It shows PENDING and is counted so.
    await db().insert(rotationQueue).values({ deviceId: device!.id, secretCreatedAt: null });
    assert.equal((await deviceRow(server, device!.id)).rotationState, "PENDING");
    const counts = (await server.services.rotation.status()).counts_by_state;
    assert.deepEqual([counts.QUEUED, counts.PENDING, counts.TIMEOUT], [0, 1, 0]);

    const [{ last }] = await other`select coalesce(max(id), 0)::int as last from events`;
    await expireNow(server, device!.id);
    await server.services.rotation.runCycle();
    assert.equal((await deviceRow(server, device!.id)).rotationState, "TIMEOUT");
    assert.deepEqual(await queueRows(), []);
    const events = await other`select payload->>'from' as "from", payload->>'to' as "to" from events
      where id > ${last} and type = 'rotation.state' and (payload->>'device_id')::int = ${device!.id} order by id`;
    assert.deepEqual(events.map((event) => `${event.from}→${event.to}`), ["PENDING→TIMEOUT"]);
    assert.equal((await db().select().from(devices).where(eq(devices.id, device!.id)))[0]!.rotationState, "TIMEOUT");
  });

  /** Makes the database refuse the queue row of `deviceId`, as a fault in the middle of the fleet's queueing would. */
  const refuseQueueRowOf = async (deviceId: number) => {
    await other.unsafe(`create or replace function refuse_queue_row() returns trigger language plpgsql as $$
      begin if new.device_id = ${deviceId} then raise exception 'injected fault'; end if; return new; end $$`);
    await other`create trigger refuse_queue_row before insert on rotation_queue for each row execute function refuse_queue_row()`;
  };
  const allowQueueRows = () => other`drop trigger if exists refuse_queue_row on rotation_queue`;
  const stateEventsAfter = async (last: number) =>
    (await other`select count(*)::int as n from events where id > ${last} and type = 'rotation.state'`)[0]!.n;

  test("a fault in a later key range queues nothing: the fleet joins the queue whole or not at all", async () => {
    await reset();
    await createFleet(server, 5);
    const keysInOrder = (await db().select({ id: devices.id, key: devices.key }).from(devices)).sort((a, b) => a.key.localeCompare(b.key));
    const [{ last }] = await other`select coalesce(max(id), 0)::int as last from events`;
    // Two devices per key range: the ranges before the last go in, the last one (the last key's) fails.
    await refuseQueueRowOf(keysInOrder.at(-1)!.id);
    try {
      await assert.rejects(db().transaction((tx) => queueAllOk(tx, 2)), (error) => /injected fault/.test(errorMessage(error)));
    } finally {
      await allowQueueRows();
    }
    assert.deepEqual(await queueRows(), []);
    assert.deepEqual(new Set(Object.values(await statesOf(server))), new Set(["OK"]));
    assert.equal(await stateEventsAfter(last), 0, "no queued event is left in the live stream");
  });

  test("POST /api/rotation/trigger when queueing fails: 500 envelope without SQL, nothing queued, nothing audited", async () => {
    await reset();
    const [device] = await createFleet(server, 2);
    const [{ lastAudit }] = await other`select coalesce(max(id), 0)::int as "lastAudit" from audit_events`;
    await refuseQueueRowOf(device!.id);
    let response: Response;
    try {
      response = await server.admin("POST", "/api/rotation/trigger");
    } finally {
      await allowQueueRows();
    }
    assert.equal(response.status, 500);
    const body = await response.json();
    assert.deepEqual([body.code, body.error, body.details], ["INTERNAL_ERROR", "Something went wrong on our side. The error was logged.", null]);
    assert.doesNotMatch(JSON.stringify(body), /rotation_queue|insert|injected fault/i);
    assert.deepEqual(await queueRows(), []);
    assert.deepEqual(new Set(Object.values(await statesOf(server))), new Set(["OK"]));
    const [{ audited }] = await other`select count(*)::int as audited from audit_events where id > ${lastAudit}`;
    assert.equal(audited, 0);
  });

  test("a scheduled queueing that fails is reported, the cycle goes on, and the next cycle queues the fleet", async () => {
    await reset();
    const [timingOut, refused] = await createFleet(server, 3);
    // A rotation past its timeout: the cycle has to end it although its queueing fails.
    await server.admin("POST", `/api/devices/${timingOut!.id}/rotate`);
    await expireNow(server, timingOut!.id);
    const longAgo = "2000-01-01T00:00:00.000Z";
    await db().insert(settings).values({ key: "rotation.schedule_baseline", value: longAgo }).onConflictDoUpdate({ target: settings.key, set: { value: longAgo } });
    await refuseQueueRowOf(refused!.id);
    try {
      const failed = await server.services.rotation.runCycle();
      assert.equal(failed.queued, 0);
      assert.equal(failed.timed_out, 1);
      assert.equal((await deviceRow(server, timingOut!.id)).rotationState, "TIMEOUT");
      // Nothing queued, and the timed-out device waits for its retry.
      assert.equal(failed.started, null);
      assert.match(failed.errors.join("\n"), /^scheduled queueing failed \(.*injected fault.*\); will retry$/);
      assert.deepEqual(await queueRows(), []);
      const [baseline] = await db().select().from(settings).where(eq(settings.key, "rotation.schedule_baseline"));
      assert.equal(baseline!.value, longAgo, "the occurrence stays due");
    } finally {
      await allowQueueRows();
    }
    const retried = await server.services.rotation.runCycle();
    assert.deepEqual(retried.errors, []);
    assert.equal(retried.queued, (await db().select().from(devices)).length - 1, "every device but the TIMEOUT one");
    assert.notEqual(retried.started, null);
    const shown = Object.values(await statesOf(server));
    const counted = (state: string) => shown.filter((s) => s === state).length;
    assert.deepEqual([counted("PENDING"), counted("TIMEOUT"), counted("QUEUED")], [1, 1, shown.length - 2]);
  });
});
