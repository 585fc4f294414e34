/**
 * The rotation dashboard as CONTRACT §2 defines it, computed the plain way: every device read at once and grouped in
 * memory. The fake rotation service is built on it, and the tests hold the real dashboard (rows PostgreSQL writes as
 * JSON, paged or streamed) to it.
 */
import { asc, eq } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { deviceModels, devices, rotationQueue } from "../../db/schema.ts";
import type { DashboardGroup } from "../../lib/rotation/dashboard.ts";
import type { RotationService } from "../../lib/rotation/service.ts";
import type { DashboardRow } from "../../lib/schemas.ts";

type RotationState = DashboardRow["rotation_state"];

const DAY_MS = 86_400_000;

/** The rotation state a device shows, in plain terms: QUEUED while it has a queue row, unless it is PENDING already. */
export const shownRotationState = (column: RotationState, queueRow: number | null): RotationState =>
  queueRow !== null && column !== "PENDING" ? "QUEUED" : column;

/** Healthy unless TIMEOUT; a TIMEOUT device is a warning while its last completed rotation is fewer than `thresholdDays` whole days ago. */
export function dashboardGroupOf(row: Pick<DashboardRow, "rotation_state" | "days_since_rotation">, thresholdDays: number): DashboardGroup {
  if (row.rotation_state !== "TIMEOUT") return "healthy";
  return row.days_since_rotation !== null && row.days_since_rotation < thresholdDays ? "warning" : "critical";
}

/** What a dashboard row shows of a device, its days counted at `now`. */
export function toDashboardRow(
  device: Omit<DashboardRow, "last_rotation_completed_at" | "days_since_rotation"> & { completed: Date | null },
  now: Date,
): DashboardRow {
  const { completed, ...rest } = device;
  const days = completed ? Math.floor((now.getTime() - completed.getTime()) / DAY_MS) : null;
  return { ...rest, last_rotation_completed_at: completed?.toISOString() ?? null, days_since_rotation: days };
}

/** Every group's rows at `now`, by key, from the database as it is. */
export async function dashboardOracle(db: Database, now: Date, thresholdDays = 7): Promise<Record<DashboardGroup, DashboardRow[]>> {
  const rows = await db
    .select({
      id: devices.id,
      key: devices.key,
      device_name: devices.deviceName,
      device_model_code: deviceModels.code,
      column: devices.rotationState,
      queued: rotationQueue.deviceId,
      rotation_unconfirmed: devices.rotationUnconfirmed,
      completed: devices.lastRotationCompletedAt,
    })
    .from(devices)
    .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
    .leftJoin(rotationQueue, eq(rotationQueue.deviceId, devices.id))
    .orderBy(asc(devices.key));
  const groups: Record<DashboardGroup, DashboardRow[]> = { healthy: [], warning: [], critical: [] };
  for (const { column, queued, rotation_unconfirmed, completed, ...device } of rows) {
    const row = toDashboardRow({ ...device, rotation_state: shownRotationState(column, queued), rotation_unconfirmed, completed }, now);
    groups[dashboardGroupOf(row, thresholdDays)].push(row);
  }
  return groups;
}

/** A group of the whole dashboard as its chunks make it at `now`: their JSON texts joined, and how many rows they hold. */
export async function wholeGroup(rotation: Pick<RotationService, "dashboardJsonChunks">, group: DashboardGroup, now: Date): Promise<{ joined: string; rows: number }> {
  const texts: string[] = [];
  let rows = 0;
  for await (const batch of rotation.dashboardJsonChunks(group, now)) {
    for (const part of batch) {
      texts.push(Buffer.from(part.text).toString("utf8"));
      rows += part.rows;
    }
  }
  return { joined: texts.join(","), rows };
}
