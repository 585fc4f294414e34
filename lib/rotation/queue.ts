/**
 * The rotation queue (db/schema.ts rotationQueue): a device with a queue row is QUEUED. Its rotation_state column keeps
 * OK or TIMEOUT while it waits, and becomes PENDING in the transaction that removes the row. The rotation_state every
 * reader shows is rotationStateSql; the triggers of migration 0010 write the rotation.state events from the same rule.
 *
 * Every change keeps one order, which those triggers rely on: a device leaves the queue after its row's update in the
 * same transaction, and joins it from PENDING before that update.
 */
import { and, count, eq, ne, type SQL, sql } from "drizzle-orm";
import type { Database, Executor } from "../../db/client.ts";
import { type DeviceRow, devices, rotationQueue } from "../../db/schema.ts";

type RotationState = DeviceRow["rotationState"];

const hasQueueRow = sql`exists (select 1 from ${rotationQueue} where ${rotationQueue.deviceId} = ${devices.id})`;

/** A device's rotation state as the API shows it. */
export const rotationStateSql = sql<RotationState>`case when ${devices.rotationState} <> 'PENDING' and ${hasQueueRow} then 'QUEUED'::rotation_state else ${devices.rotationState} end`;

/** Devices in `state`, written so that OK, TIMEOUT and PENDING read the (rotation_state, key) index. */
export function rotationStateIs(state: RotationState): SQL {
  if (state === "QUEUED") return and(ne(devices.rotationState, "PENDING"), hasQueueRow)!;
  if (state === "PENDING") return eq(devices.rotationState, "PENDING");
  return and(eq(devices.rotationState, state), sql`not ${hasQueueRow}`)!;
}

/**
 * Queues the devices `where` selects among those not PENDING (queued ones stay as they are, in their place); returns
 * how many joined, counted in the database. One statement, and no device row is written.
 */
export async function enqueue(executor: Executor, where: SQL | undefined): Promise<number> {
  const joined = executor.$with("joined").as(
    executor
      .insert(rotationQueue)
      .select(
        executor
          .select({ deviceId: devices.id, secretCreatedAt: devices.secretCreatedAt, queuedAt: sql`now()`.as("queued_at") })
          .from(devices)
          .where(and(ne(devices.rotationState, "PENDING"), where)),
      )
      .onConflictDoNothing()
      .returning({ deviceId: rotationQueue.deviceId }),
  );
  const [result] = await executor.with(joined).select({ n: count() }).from(joined);
  return result?.n ?? 0;
}

/**
 * Takes `deviceId` out of the queue; whether it was queued. After its row's update when it leaves for another state
 * (the queue's trigger then writes QUEUED → that state); a PENDING device's row goes without an event.
 */
export async function dequeue(executor: Executor, deviceId: number): Promise<boolean> {
  const removed = await executor.delete(rotationQueue).where(eq(rotationQueue.deviceId, deviceId)).returning({ deviceId: rotationQueue.deviceId });
  return removed.length > 0;
}

/**
 * Removes the queue row of a PENDING device, writing no event: queueing the fleet can add one while the device is being
 * started (it read the device before the start, and waited for the start's removal of the row). Called before a
 * PENDING device's row changes (timeout, completion), so that it does not become QUEUED instead.
 */
export async function dropQueueRowWhilePending(executor: Executor, deviceId: number): Promise<void> {
  await executor
    .delete(rotationQueue)
    .where(and(eq(rotationQueue.deviceId, deviceId), sql`exists (select 1 from ${devices} where ${devices.id} = ${deviceId} and ${devices.rotationState} = 'PENDING')`));
}

/**
 * Devices per state as shown: the column counts, less the queued devices counted as QUEUED. One statement, so one
 * snapshot: counted side by side, a device starting in between could be counted twice. Only the few queued devices whose
 * column is not OK are joined, so no device row is read. A queue row of a PENDING device (rotationStateSql) is not
 * counted as queued.
 */
export async function countsByState(db: Database): Promise<Record<RotationState, number>> {
  const counted = (query: SQL) => sql<number>`(${query})`.mapWith(Number);
  const ofColumn = (state: RotationState) => counted(sql`select count(*) from ${devices} where ${devices.rotationState} = ${state}`);
  const queuedWith = (state: RotationState) =>
    counted(
      sql`select count(*) from ${rotationQueue} join ${devices} on ${devices.id} = ${rotationQueue.deviceId} where ${devices.rotationState} = ${state}`,
    );
  const [row] = await db
    .select({
      ok: ofColumn("OK"),
      pending: ofColumn("PENDING"),
      timedOut: ofColumn("TIMEOUT"),
      queue: counted(sql`select count(*) from ${rotationQueue}`),
      queuedTimedOut: queuedWith("TIMEOUT"),
      queuedPending: queuedWith("PENDING"),
    })
    .from(sql`(values (1)) as one (x)`);
  const { ok, pending, timedOut, queue, queuedTimedOut, queuedPending } = row!;
  const queued = queue - queuedPending;
  return { OK: ok - (queued - queuedTimedOut), QUEUED: queued, PENDING: pending, TIMEOUT: timedOut - queuedTimedOut };
}
