/**
 * The rotation dashboard (CONTRACT §2): devices grouped by rotation health, each group by key. A page of a group is
 * read from the devices on an index. The whole dashboard (100,000 devices are 22 MB of JSON) is kept ready in
 * dashboard_chunks, a chunk of rows per two-character key prefix, rendered in the background (refresh); a chunk that is
 * not fresh when the dashboard is read is rendered from the devices there and then, so the answer is always the
 * devices as they are (docs/performance.md, "Dashboard").
 */
import { and, asc, count, eq, gt, isNull, not, or, type SQL, sql } from "drizzle-orm";
import { type Database, type DatabaseHandle, rowsOf } from "../../db/client.ts";
import { dashboardChunks, dashboardDirty, deviceModels, devices } from "../../db/schema.ts";
import { type JoinedRows, type Page, toPage } from "../paging.ts";
import type { DashboardCounts } from "../schemas.ts";
import { rotationStateIs, rotationStateSql } from "./queue.ts";

const DAY_MS = 86_400_000;

export const dashboardGroups = ["healthy", "warning", "critical"] as const;
export type DashboardGroup = (typeof dashboardGroups)[number];

/** A page of one dashboard group: by key after `after`, days counted at `now` (the same for every page of one answer). */
export type DashboardPageQuery = { after?: string; limit: number; now: Date };

/** Chunks rendered per statement: at 100,000 devices about 10,000 devices, 0.1–0.2 s of PostgreSQL's time. */
const RENDERED_PER_STATEMENT = 128;

/**
 * What a statement reading the whole dashboard aims at: its first reads this many chunks, each next one as many as
 * would have made READ_BYTES of the last. Few statements (each is a round trip the answer waits for: at 100,000
 * devices 128 chunks a statement took 185 ms against 120 ms for 512, through Node's fetch), and memory bounded
 * whatever the size of the fleet.
 */
const FIRST_READ = 128;
const READ_BYTES = 8 * 1024 * 1024;
const PREFIXES = 36 * 36;

/** Only one process renders at a time: two renderings of one chunk from different snapshots could store the older. */
export const DASHBOARD_RENDER_LOCK_ID = 7_341_017;

const completedMs = sql`date_trunc('milliseconds', ${devices.lastRotationCompletedAt})`;
const completedEpochMs = sql`(extract(epoch from ${completedMs}) * 1000)`;

/** Whole days since the last completed rotation at `now`, cut to the millisecond; null without one. */
const daysAt = (now: Date) => sql`floor((${now.getTime()}::numeric - ${completedEpochMs}) / ${DAY_MS})`;

/** The devices of the chunk whose prefix is the row of dashboard_chunks at hand: a range of the key's index. */
const inChunk = sql`${devices.key} >= ${dashboardChunks.prefix} || '000000' and ${devices.key} <= ${dashboardChunks.prefix} || 'zzzzzz'`;

const stored = {
  healthy: { text: dashboardChunks.healthy, rows: dashboardChunks.healthyCount },
  warning: { text: dashboardChunks.warning, rows: dashboardChunks.warningCount },
  critical: { text: dashboardChunks.critical, rows: dashboardChunks.criticalCount },
} as const;

export function createDashboard({ db, rawTexts, criticalThresholdDays }: { db: Database; rawTexts: DatabaseHandle["rawTexts"]; criticalThresholdDays: number }) {
  /**
   * The devices of one group at `now`, each condition on an index. days < threshold ⇔ completed > now − threshold days
   * (to the millisecond, as the row's days are counted).
   */
  function groupWhere(group: DashboardGroup, now: Date): SQL | undefined {
    const cutoff = sql`${new Date(now.getTime() - criticalThresholdDays * DAY_MS).toISOString()}::timestamptz`;
    const timedOut = rotationStateIs("TIMEOUT");
    const inGroup: Record<DashboardGroup, SQL | undefined> = {
      healthy: not(timedOut),
      warning: and(timedOut, sql`${completedMs} > ${cutoff}`),
      critical: and(timedOut, or(isNull(devices.lastRotationCompletedAt), sql`${completedMs} <= ${cutoff}`)),
    };
    return inGroup[group];
  }

  /**
   * A device's row as JSON text, written by PostgreSQL: the fields of dashboardRowSchema in its order, timestamps to
   * the millisecond, days counted at `now`. Byte for byte what JSON.stringify writes of the row
   * (test/support/dashboard-oracle.ts is the plain model the tests hold it to), so the rows are sent as they come.
   */
  const rowJson = (now: Date) => sql<string>`concat(
    '{"id":', ${devices.id},
    ',"key":', to_json(${devices.key}),
    ',"device_name":', coalesce(to_json(${devices.deviceName})::text, 'null'),
    ',"device_model_code":', to_json(${deviceModels.code}),
    ',"rotation_state":"', ${rotationStateSql},
    '","rotation_unconfirmed":', case when ${devices.rotationUnconfirmed} then 'true' else 'false' end,
    ',"last_rotation_completed_at":', coalesce('"' || to_char(${completedMs} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null'),
    ',"days_since_rotation":', coalesce(${daysAt(now)}::bigint::text, 'null'),
    '}')`;

  /**
   * Whether the chunk at hand may be sent as stored at `now`: rendered with this threshold, none of its devices changed
   * since (no dirty mark its rendering has not seen), and no day of its rows turned since it was rendered.
   */
  const isFresh = (now: Date) => {
    const at = sql`${now.getTime()}::bigint`;
    return sql<boolean>`(${dashboardChunks.thresholdDays} is not distinct from ${criticalThresholdDays}
      and coalesce(${dashboardChunks.validFromMs} <= ${at}, true) and coalesce(${at} < ${dashboardChunks.validUntilMs}, true)
      and not exists (select 1 from ${dashboardDirty} where ${dashboardDirty.prefix} = ${dashboardChunks.prefix}))`;
  };

  /** A group's rows of the chunk at hand, rendered from the devices at `now` unless the chunk is fresh (then none). */
  const liveRows = (group: DashboardGroup, now: Date) =>
    db
      .select({
        text: sql<string>`coalesce(string_agg(${rowJson(now)}, ',' order by ${devices.key}), '')`.as("live_text"),
        rows: count().as("live_rows"),
      })
      .from(devices)
      .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
      .where(and(sql`not ${isFresh(now)}`, inChunk, groupWhere(group, now)))
      .as("live");

  return {
    /**
     * The dashboard's counts without reading its groups: one statement of four counts, each on an index (the state's,
     * the last completed rotation's, the unconfirmed devices'). A TIMEOUT device is a warning when its completion,
     * cut to the millisecond, is after now − threshold days (groupWhere); the cut value is after that instant
     * exactly when the time itself is at least 1 ms after it, so the comparison can use the index on the column.
     */
    async counts(now: Date): Promise<DashboardCounts> {
      const warningFrom = new Date(now.getTime() - criticalThresholdDays * DAY_MS + 1).toISOString();
      const from = sql`${warningFrom}::timestamptz`;
      const counted = (where: SQL) => sql<number>`(select count(*) from ${devices} where ${where})`.mapWith(Number);
      const [row] = await db
        .select({
          all: sql<number>`(select count(*) from ${devices})`.mapWith(Number),
          timedOut: counted(rotationStateIs("TIMEOUT")),
          warning: counted(sql`${rotationStateIs("TIMEOUT")} and ${devices.lastRotationCompletedAt} >= ${from}`),
          unconfirmed: counted(sql`${devices.rotationUnconfirmed}`),
        })
        .from(sql`(values (1)) as one (x)`);
      const { all, timedOut, warning, unconfirmed } = row!;
      return { healthy: all - timedOut, warning, critical: timedOut - warning, unconfirmed };
    },

    /** One page of a group, by key (keyset paging, lib/paging.ts), each row its JSON text (rowJson). */
    async page(group: DashboardGroup, { after, limit, now }: DashboardPageQuery): Promise<Page<string>> {
      const rows = await db
        .select({ key: devices.key, json: rowJson(now) })
        .from(devices)
        .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
        .where(and(groupWhere(group, now), after === undefined ? undefined : gt(devices.key, after)))
        .orderBy(asc(devices.key))
        .limit(limit + 1);
      const page = toPage(rows, limit, (row) => row.key);
      return { items: page.items.map((row) => row.json), next: page.next };
    },

    /**
     * The whole of a group at `now`, chunk after chunk in key order (so by key), about READ_BYTES a statement: a fresh
     * chunk as stored, any other rendered from the devices in the same statement, so each statement answers from one
     * snapshot. Chunks without rows of the group are left out.
     */
    async *chunks(group: DashboardGroup, now: Date): AsyncGenerator<JoinedRows[]> {
      const live = liveRows(group, now);
      type Read = { read: Uint8Array[][]; limit: number };
      const readAfter = async (after: string, limit: number): Promise<Read> => {
        const page = db
          .select({
            prefix: dashboardChunks.prefix,
            text: sql<string>`case when ${isFresh(now)} then ${stored[group].text} else ${live.text} end`.as("text"),
            rows: sql<number>`case when ${isFresh(now)} then ${stored[group].rows} else ${live.rows} end`.as("rows"),
          })
          .from(dashboardChunks)
          .innerJoinLateral(live, sql`true`)
          // A fresh chunk without rows of the group is not read: warning and critical are a few chunks at most.
          .where(and(gt(dashboardChunks.prefix, after), or(sql`not ${isFresh(now)}`, gt(stored[group].rows, 0))))
          .orderBy(asc(dashboardChunks.prefix))
          .limit(limit)
          .as("page");
        // Answered as bytes: the server writes the stored JSON as it came, without decoding and encoding 22 MB.
        const read = (await rawTexts(sql`select ${page.prefix}, ${page.text}, ${page.rows}::text from ${page} order by ${page.prefix}`)) as Uint8Array[][];
        return { read, limit };
      };
      let next: Promise<Read> | null = readAfter("", FIRST_READ);
      try {
        while (next) {
          const { read, limit }: Read = await next;
          const bytes = read.reduce((sum, [, text]) => sum + text!.length, 0);
          const nextLimit = Math.min(PREFIXES, Math.max(1, Math.floor((limit * READ_BYTES) / Math.max(bytes, 1))));
          // The next statement runs while this one's chunks are sent.
          next = read.length < limit ? null : readAfter(String(read.at(-1)![0]), nextLimit);
          const filled = read.map(([, text, rows]) => ({ text: text!, rows: Number(String(rows)) })).filter((chunk) => chunk.rows > 0);
          if (filled.length > 0) yield filled;
        }
      } finally {
        // Left unread when the client went away: its failure is nobody's.
        next?.catch(() => {});
      }
    },

    /**
     * Renders and stores the chunks that are not fresh at `now`, RENDERED_PER_STATEMENT at a time; returns how many. Each
     * is one statement, so one snapshot: it removes exactly the dirty marks of the changes it rendered (a change
     * committed after its snapshot keeps its mark). Does nothing while another process renders.
     */
    async refresh(now: Date): Promise<number> {
      let rendered = 0;
      for (;;) {
        const done = await db.transaction(async (tx) => {
          const [lock] = rowsOf<{ taken: boolean }>(await tx.execute(sql`select pg_try_advisory_xact_lock(${DASHBOARD_RENDER_LOCK_ID}) as taken`));
          if (!lock?.taken) return 0;
          const days = daysAt(now);
          const ofGroup = (group: DashboardGroup) => groupWhere(group, now);
          const result = await tx.execute(sql`
            with stale as (
              select ${dashboardChunks.prefix} from ${dashboardChunks} where not ${isFresh(now)}
              order by ${dashboardChunks.prefix} limit ${RENDERED_PER_STATEMENT}
            ),
            rendered as (
              select stale.prefix, r.* from stale cross join lateral (
                select
                  coalesce(string_agg(x.json, ',' order by x.key) filter (where x.healthy), '') as healthy,
                  coalesce(string_agg(x.json, ',' order by x.key) filter (where x.warning), '') as warning,
                  coalesce(string_agg(x.json, ',' order by x.key) filter (where x.critical), '') as critical,
                  count(*) filter (where x.healthy) as healthy_count,
                  count(*) filter (where x.warning) as warning_count,
                  count(*) filter (where x.critical) as critical_count,
                  max(x.completed + x.days * ${DAY_MS}) as valid_from_ms,
                  min(x.completed + (x.days + 1) * ${DAY_MS}) as valid_until_ms
                from (
                  select ${devices.key} as key, ${rowJson(now)} as json, ${completedEpochMs} as completed, ${days} as days,
                    coalesce(${ofGroup("healthy")}, false) as healthy, coalesce(${ofGroup("warning")}, false) as warning,
                    coalesce(${ofGroup("critical")}, false) as critical
                  from ${devices} join ${deviceModels} on ${eq(devices.deviceModelId, deviceModels.id)}
                  where ${devices.key} >= stale.prefix || '000000' and ${devices.key} <= stale.prefix || 'zzzzzz'
                ) x
              ) r
            ),
            seen as (delete from ${dashboardDirty} where ${dashboardDirty.prefix} in (select prefix from stale))
            update ${dashboardChunks} set
              threshold_days = ${criticalThresholdDays}, valid_from_ms = rendered.valid_from_ms, valid_until_ms = rendered.valid_until_ms,
              healthy = rendered.healthy, warning = rendered.warning, critical = rendered.critical,
              healthy_count = rendered.healthy_count, warning_count = rendered.warning_count, critical_count = rendered.critical_count
            from rendered where ${dashboardChunks.prefix} = rendered.prefix
            returning 1`);
          return rowsOf(result).length;
        });
        rendered += done;
        if (done < RENDERED_PER_STATEMENT) return rendered;
      }
    },
  };
}

export type Dashboard = ReturnType<typeof createDashboard>;
