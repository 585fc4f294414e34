/**
 * The device_logs table: day partitions made on demand, batched inserts (one statement per batch, whatever its size),
 * the "one device, a time range" read, and retention by age (whole days dropped) and by size (a device's oldest lines
 * deleted when it holds more than its share). Works the same on PostgreSQL and PGlite.
 */
import { and, asc, eq, gte, ilike, lt, sql } from "drizzle-orm";
import { type Database, rowsOf } from "../../db/client.ts";
import { deviceLogs, deviceLogVolume, events } from "../../db/schema.ts";

/** A line ready to store: its device and its stamp in microseconds since the epoch (unique within this process). */
export type StoredLine = { deviceId: number; stampUs: number; message: string; attributes: Record<string, unknown> | null };

export type LogRow = { ts: Date; message: string };

const DAY_MS = 86_400_000;
const PARTITION = /^device_logs_(\d{4})(\d{2})(\d{2})$/;

const dayOf = (ms: number) => new Date(Math.floor(ms / DAY_MS) * DAY_MS);
const dayKey = (day: Date) => day.toISOString().slice(0, 10);
const partitionName = (day: Date) => `device_logs_${dayKey(day).replaceAll("-", "")}`;

/** An ISO timestamp with microseconds, which a JavaScript Date cannot carry. */
export function isoMicros(stampUs: number): string {
  const ms = Math.floor(stampUs / 1000);
  return `${new Date(ms).toISOString().slice(0, 23)}${String(stampUs - ms * 1000).padStart(3, "0")}Z`;
}

const LINES_PER_EVENT = 200;

/** The `device.logs` events of a batch: `{device_id, lines: [{timestamp, message}]}`, in arrival order. */
function lineEvents(lines: StoredLine[]) {
  const byDevice = new Map<number, { timestamp: string; message: string }[]>();
  for (const line of lines) {
    const own = byDevice.get(line.deviceId) ?? [];
    own.push({ timestamp: new Date(Math.floor(line.stampUs / 1000)).toISOString(), message: line.message });
    byDevice.set(line.deviceId, own);
  }
  return [...byDevice].flatMap(([deviceId, own]) =>
    Array.from({ length: Math.ceil(own.length / LINES_PER_EVENT) }, (_, i) => ({
      type: "device.logs",
      payload: { device_id: deviceId, lines: own.slice(i * LINES_PER_EVENT, (i + 1) * LINES_PER_EVENT) },
    })),
  );
}

/** A LIKE pattern for a case-insensitive substring, where `*` stands for any run of characters. */
export function likePattern(query: string): string {
  const escaped = query.replace(/[\\%_]/g, (c) => `\\${c}`).replaceAll("*", "%");
  return `%${escaped}%`;
}

/** Where the lines are kept: PostgreSQL or PGlite here, memory in the unit tests (test/support/fakes/device-logs.ts). */
export type LogStore = {
  /** Stores a batch, all of it or nothing. */
  insert(lines: StoredLine[]): Promise<void>;
  /** Up to `limit` lines of one device in [start, end), oldest first, optionally only those matching `query`. */
  read(deviceId: number, range: { start: Date; end: Date; query?: string; limit: number }): Promise<LogRow[]>;
  /** Readies the store for today's and tomorrow's lines. */
  prepare(now: Date): Promise<void>;
  /** Drops the days that ended more than `days` days before `now`; returns how many. */
  dropOlderThan(now: Date, days: number): Promise<number>;
  /** Deletes the oldest lines of every device holding more than `maxLines`; returns how many lines went. */
  trimDevices(maxLines: number): Promise<number>;
};

export function createLogStore(db: Database): LogStore {
  const known = new Set<string>();

  async function ensureDay(day: Date) {
    const name = partitionName(day);
    if (known.has(name)) return;
    const from = day.toISOString();
    const to = new Date(day.getTime() + DAY_MS).toISOString();
    try {
      await db.execute(sql.raw(`create table if not exists "${name}" partition of device_logs for values from ('${from}') to ('${to}')`));
    } catch (error) {
      // Another replica made it between our check and our create.
      if (!/already exists/.test(String((error as Error).message)) && !/already exists/.test(String((error as { cause?: Error }).cause?.message))) throw error;
    }
    known.add(name);
  }

  async function partitions(): Promise<{ name: string; day: Date }[]> {
    const rows = rowsOf<{ name: string }>(
      await db.execute(sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'device_logs'::regclass`),
    );
    return rows.flatMap(({ name }) => {
      const match = PARTITION.exec(name);
      return match ? [{ name, day: new Date(`${match[1]}-${match[2]}-${match[3]}T00:00:00Z`) }] : [];
    });
  }

  return {
    /** Stores a batch in one transaction with the per-device volume it adds; makes the days' partitions first. */
    async insert(lines: StoredLine[]) {
      if (lines.length === 0) return;
      const volume = new Map<string, { deviceId: number; day: string; lines: number }>();
      const days = new Set<number>();
      for (const line of lines) {
        const day = dayOf(line.stampUs / 1000);
        days.add(day.getTime());
        const key = `${line.deviceId}/${dayKey(day)}`;
        const entry = volume.get(key) ?? { deviceId: line.deviceId, day: dayKey(day), lines: 0 };
        entry.lines++;
        volume.set(key, entry);
      }
      for (const day of days) await ensureDay(new Date(day));
      const rows = JSON.stringify(lines.map((line) => ({ d: line.deviceId, t: isoMicros(line.stampUs), m: line.message, a: line.attributes })));
      try {
        await db.transaction(async (tx) => {
          await tx.execute(
            sql`insert into device_logs (device_id, ts, message, attributes) select d, t, m, a from jsonb_to_recordset(${rows}::jsonb) as x(d integer, t timestamptz, m text, a jsonb)`,
          );
          // The live stream's copy (GET /api/events): one event per device and batch, up to LINES_PER_EVENT lines each.
          await tx.insert(events).values(lineEvents(lines));
          await tx.execute(sql`select pg_notify('iot_events', '')`);
          await tx
            .insert(deviceLogVolume)
            .values([...volume.values()])
            .onConflictDoUpdate({ target: [deviceLogVolume.deviceId, deviceLogVolume.day], set: { lines: sql`${deviceLogVolume.lines} + excluded.lines` } });
        });
      } catch (error) {
        // A partition dropped behind our back (another replica's retention, a restore): make it again next time.
        known.clear();
        throw error;
      }
    },

    /** Up to `limit` lines of one device in [start, end), oldest first, optionally only those matching `query`. */
    async read(deviceId: number, range: { start: Date; end: Date; query?: string; limit: number }): Promise<LogRow[]> {
      const conditions = [eq(deviceLogs.deviceId, deviceId), gte(deviceLogs.ts, range.start), lt(deviceLogs.ts, range.end)];
      if (range.query) conditions.push(ilike(deviceLogs.message, likePattern(range.query)));
      return db
        .select({ ts: deviceLogs.ts, message: deviceLogs.message })
        .from(deviceLogs)
        .where(and(...conditions))
        .orderBy(asc(deviceLogs.ts))
        .limit(range.limit);
    },

    /** Makes today's and tomorrow's partitions, so the first write of a day does not wait for it. */
    async prepare(now: Date) {
      await ensureDay(dayOf(now.getTime()));
      await ensureDay(dayOf(now.getTime() + DAY_MS));
    },

    /** Drops the days that ended more than `days` days before `now`; returns how many. */
    async dropOlderThan(now: Date, days: number): Promise<number> {
      // A day has ended before the cutoff exactly when it starts before the cutoff's day.
      const firstKept = dayOf(now.getTime() - days * DAY_MS);
      let dropped = 0;
      for (const partition of await partitions()) {
        if (partition.day >= firstKept) continue;
        await db.execute(sql.raw(`drop table if exists "${partition.name}"`));
        known.delete(partition.name);
        dropped++;
      }
      await db.delete(deviceLogVolume).where(lt(deviceLogVolume.day, dayKey(firstKept)));
      return dropped;
    },

    /** Deletes the oldest lines of every device holding more than `maxLines`; returns how many lines went. */
    async trimDevices(maxLines: number): Promise<number> {
      const over = await db
        .select({ deviceId: deviceLogVolume.deviceId, total: sql<number>`sum(${deviceLogVolume.lines})::integer` })
        .from(deviceLogVolume)
        .groupBy(deviceLogVolume.deviceId)
        .having(sql`sum(${deviceLogVolume.lines}) > ${maxLines}`);
      let deleted = 0;
      for (const { deviceId, total } of over) {
        let excess = total - maxLines;
        const days = await db.select().from(deviceLogVolume).where(eq(deviceLogVolume.deviceId, deviceId)).orderBy(asc(deviceLogVolume.day));
        for (const day of days) {
          if (excess <= 0) break;
          const start = new Date(`${day.day}T00:00:00Z`);
          const end = new Date(start.getTime() + DAY_MS);
          const inDay = and(eq(deviceLogs.deviceId, deviceId), gte(deviceLogs.ts, start), lt(deviceLogs.ts, end));
          let gone: number;
          if (day.lines <= excess) {
            gone = rowsOf<{ n: number }>(await db.execute(sql`with gone as (delete from device_logs where ${inDay} returning 1) select count(*)::integer as n from gone`))[0]!.n;
            await db.delete(deviceLogVolume).where(and(eq(deviceLogVolume.deviceId, deviceId), eq(deviceLogVolume.day, day.day)));
          } else {
            // The oldest `excess` lines of that day: everything up to the excess-th line's time.
            gone = rowsOf<{ n: number }>(
              await db.execute(sql`with last as (select ts from device_logs where ${inDay} order by ts offset ${excess - 1} limit 1),
                gone as (delete from device_logs where ${inDay} and ts <= (select ts from last) returning 1) select count(*)::integer as n from gone`),
            )[0]!.n;
            await db
              .update(deviceLogVolume)
              .set({ lines: sql`greatest(${deviceLogVolume.lines} - ${gone}, 0)` })
              .where(and(eq(deviceLogVolume.deviceId, deviceId), eq(deviceLogVolume.day, day.day)));
          }
          excess -= gone;
          deleted += gone;
        }
      }
      return deleted;
    },
  };
}
