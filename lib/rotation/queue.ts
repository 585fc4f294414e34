/**
 * The rotation queue (db/schema.ts rotationQueue): a device with a queue row is QUEUED. Its rotation_state column keeps
 * OK or TIMEOUT while it waits, and becomes PENDING in the transaction that removes the row. The rotation_state every
 * reader shows is rotationStateSql; the triggers of migration 0010 write the rotation.state events from the same rule.
 *
 * Every change keeps one order, which those triggers rely on: a device leaves the queue after its row's update in the
 * same transaction, and joins it from PENDING before that update.
 */
import { and, count, eq, inArray, ne, type SQL, sql } from "drizzle-orm";
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

/** Takes `deviceId` out of the queue (after its row's update, in the same transaction). */
export async function dequeue(executor: Executor, deviceId: number): Promise<void> {
  await executor.delete(rotationQueue).where(eq(rotationQueue.deviceId, deviceId));
}

/**
 * How many devices are QUEUED, and how many of them have OK or TIMEOUT in their column (the column counts less these
 * are the devices shown OK and TIMEOUT). Only the few queued devices whose column is not OK are joined: two index
 * reads, no device row. A queue row of a PENDING device (see rotationStateSql) is not counted.
 */
export async function queueCounts(db: Database): Promise<{ queued: number; fromOk: number; fromTimeout: number }> {
  const [[all], notOk] = await Promise.all([
    db.select({ n: count() }).from(rotationQueue),
    db
      .select({ state: devices.rotationState, n: count() })
      .from(rotationQueue)
      .innerJoin(devices, eq(devices.id, rotationQueue.deviceId))
      .where(inArray(devices.rotationState, ["TIMEOUT", "PENDING"]))
      .groupBy(devices.rotationState),
  ]);
  const of = (state: RotationState) => notOk.find((row) => row.state === state)?.n ?? 0;
  const queued = (all?.n ?? 0) - of("PENDING");
  return { queued, fromOk: queued - of("TIMEOUT"), fromTimeout: of("TIMEOUT") };
}
