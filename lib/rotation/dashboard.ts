/**
 * The rotation dashboard (CONTRACT §2): devices grouped by rotation health, each group by key. A page of a group is
 * read from the devices on an index. The whole dashboard (100,000 devices are 22 MB of JSON) is kept ready in
 * dashboard_chunks, a chunk of rows per two-character key prefix, rendered in the background (refresh); a chunk that is
 * not fresh when the dashboard is read is rendered from the devices there and then, so the answer is always the
 * devices as they are (docs/performance.md, "Dashboard").
 */
import { createHash } from "node:crypto";
import { and, asc, count, eq, gt, isNull, not, or, type SQL, sql } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
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

/**
 * How much one statement takes on, so that each stays well inside the statement timeout whatever the size of the fleet,
 * and few statements make up the answer (each is a round trip it waits for): the first statement of a read or a
 * rendering takes FIRST_CHUNKS chunks, each next one as many as would have made, in the last one, READ_BYTES of JSON
 * read, LIVE_ROWS devices rendered while reading, or RENDERED_ROWS devices rendered in the background. At 100,000
 * devices 128 chunks a statement took 185 ms for the whole dashboard against 120 ms for 512, through Node's fetch.
 */
const FIRST_CHUNKS = 16;
const READ_BYTES = 8 * 1024 * 1024;
const LIVE_ROWS = 5_000;
const RENDERED_ROWS = 10_000;
const PREFIXES = 36 * 36;

/** The chunks for the next statement: as many as would have made `budget` of what `limit` chunks made `spent` of. */
const nextChunks = (limit: number, spent: number, budget: number) => Math.min(PREFIXES, Math.max(1, Math.floor((limit * budget) / Math.max(spent, 1))));

/** Only one process renders at a time: two renderings of one chunk from different snapshots could store the older. */
export const DASHBOARD_RENDER_LOCK_ID = 7_341_017;

const completedMs = sql`date_trunc('milliseconds', ${devices.lastRotationCompletedAt})`;
const completedEpochMs = sql`(extract(epoch from ${completedMs}) * 1000)`;

/** Whole days since the last completed rotation at `now`, cut to the millisecond; null without one. */
const daysAt = (now: Date) => sql`floor((${now.getTime()}::numeric - ${completedEpochMs}) / ${DAY_MS})`;

/** The devices of the chunk of `prefix` (the row of dashboard_chunks at hand unless named): a range of the key's index. */
const inChunk = (prefix: SQL | typeof dashboardChunks.prefix = dashboardChunks.prefix) =>
  sql`${devices.key} >= ${prefix} || '000000' and ${devices.key} <= ${prefix} || 'zzzzzz'`;

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
   * Whether the chunk at hand may be sent as stored at `now`: written by this very rendering, none of its devices
   * changed since (no dirty mark its rendering has not seen), and no day of its rows turned since it was rendered.
   */
  const isFresh = (now: Date, rendering: string) => {
    const at = sql`${now.getTime()}::bigint`;
    return sql<boolean>`(${dashboardChunks.renderedBy} is not distinct from ${rendering}
      and coalesce(${dashboardChunks.validFromMs} <= ${at}, true) and coalesce(${at} < ${dashboardChunks.validUntilMs}, true)
      and not exists (select 1 from ${dashboardDirty} where ${dashboardDirty.prefix} = ${dashboardChunks.prefix}))`;
  };

  /**
   * Renders the first `limit` chunks that are not fresh at `now` and stores them, returning each one's rows. One
   * statement, so one snapshot: it removes exactly the dirty marks of the changes it rendered (a change committed after
   * its snapshot keeps its mark).
   */
  const renderStatement = (now: Date, limit: number, rendering: string) => {
    const days = daysAt(now);
    const ofGroup = (group: DashboardGroup) => groupWhere(group, now);
    return sql`
      with stale as (
        select ${dashboardChunks.prefix} from ${dashboardChunks} where not ${isFresh(now, rendering)}
        order by ${dashboardChunks.prefix} limit ${limit}
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
            where ${inChunk(sql`stale.prefix`)}
          ) x
        ) r
      ),
      seen as (delete from ${dashboardDirty} where ${dashboardDirty.prefix} in (select prefix from stale))
      update ${dashboardChunks} set
        rendered_by = ${rendering}, valid_from_ms = rendered.valid_from_ms, valid_until_ms = rendered.valid_until_ms,
        healthy = rendered.healthy, warning = rendered.warning, critical = rendered.critical,
        healthy_count = rendered.healthy_count, warning_count = rendered.warning_count, critical_count = rendered.critical_count
      from rendered where ${dashboardChunks.prefix} = rendered.prefix
      returning (rendered.healthy_count + rendered.warning_count + rendered.critical_count)::integer as rows`;
  };

  /**
   * This rendering: its SQL (the rows' JSON, the groups, the spans) and its threshold. Chunks another one wrote (an
   * earlier release, a replica with another ROTATION_CRITICAL_THRESHOLD_DAYS) are never sent as stored.
   */
  const rendering = createHash("sha256")
    .update(`${new PgDialect().sqlToQuery(renderStatement(new Date(0), 1, "")).sql}\n${criticalThresholdDays}`)
    .digest("base64url")
    .slice(0, 22);

  /** A group's rows of the chunk at hand, rendered from the devices at `now` unless `fresh` (then none). */
  const liveRows = (group: DashboardGroup, now: Date, fresh: SQL.Aliased<boolean>) =>
    db
      .select({
        text: sql<string>`coalesce(string_agg(${rowJson(now)}, ',' order by ${devices.key}), '')`.as("live_text"),
        rows: count().as("live_rows"),
      })
      .from(devices)
      .innerJoin(deviceModels, eq(devices.deviceModelId, deviceModels.id))
      .where(and(sql`not ${fresh}`, inChunk(), groupWhere(group, now)))
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
     * The whole of a group at `now`, chunk after chunk in key order (so by key), as many a statement as nextChunks
     * allows: a fresh chunk as stored, any other rendered from the devices in the same statement, so each statement
     * answers from one snapshot. Chunks without rows of the group are left out.
     */
    async *chunks(group: DashboardGroup, now: Date): AsyncGenerator<JoinedRows[]> {
      // Whether the chunk at hand is fresh, worked out once per chunk for the row, its text, its count and the filter.
      const freshness = db.select({ fresh: sql<boolean>`${isFresh(now, rendering)}`.as("fresh") }).from(sql`(values (1)) as one (x)`).as("freshness");
      const fresh = freshness.fresh;
      const live = liveRows(group, now, fresh);
      type Read = { read: { prefix: string; text: Uint8Array; rows: number; fresh: boolean }[]; limit: number };
      const readAfter = async (after: string, limit: number): Promise<Read> => {
        const page = db
          .select({
            prefix: dashboardChunks.prefix,
            fresh,
            text: sql<string>`case when ${fresh} then ${stored[group].text} else ${live.text} end`.as("text"),
            rows: sql<number>`case when ${fresh} then ${stored[group].rows} else ${live.rows} end`.as("rows"),
          })
          .from(dashboardChunks)
          .innerJoinLateral(freshness, sql`true`)
          .innerJoinLateral(live, sql`true`)
          // A fresh chunk without rows of the group is not read: warning and critical are a few chunks at most.
          .where(and(gt(dashboardChunks.prefix, after), or(sql`not ${fresh}`, gt(stored[group].rows, 0))))
          .orderBy(asc(dashboardChunks.prefix))
          .limit(limit)
          .as("page");
        // Answered as bytes: the server writes the stored JSON as it came, without decoding and encoding 22 MB.
        const rows = await rawTexts(sql`select ${page.prefix}, ${page.text}, ${page.rows}::text, ${page.fresh}::text from ${page} order by ${page.prefix}`);
        const text = (value: Uint8Array | null) => Buffer.from(value!).toString("latin1");
        return { read: rows.map(([prefix, json, count, isFresh]) => ({ prefix: text(prefix!), text: json!, rows: Number(text(count!)), fresh: text(isFresh!) === "true" })), limit };
      };
      // A failure of the statement read ahead is taken by whoever awaits it, or by nobody if the client went away.
      const ahead = (promise: Promise<Read>) => (promise.catch(() => {}), promise);
      let next: Promise<Read> | null = ahead(readAfter("", FIRST_CHUNKS));
      while (next) {
        const { read, limit }: Read = await next;
        const bytes = read.reduce((sum, chunk) => sum + chunk.text.length, 0);
        const rendered = read.reduce((sum, chunk) => sum + (chunk.fresh ? 0 : chunk.rows), 0);
        const limitNext = Math.min(nextChunks(limit, bytes, READ_BYTES), rendered > 0 ? nextChunks(limit, rendered, LIVE_ROWS) : PREFIXES);
        // The next statement runs while this one's chunks are sent.
        next = read.length < limit ? null : ahead(readAfter(read.at(-1)!.prefix, limitNext));
        const filled = read.filter((chunk) => chunk.rows > 0).map(({ text, rows }) => ({ text, rows }));
        if (filled.length > 0) yield filled;
      }
    },

    /** How many chunks are not fresh at `now`, by the rule the reading uses: 0 once the rendering has caught up. */
    async stale(now: Date): Promise<number> {
      const [row] = await db.select({ n: count() }).from(dashboardChunks).where(sql`not ${isFresh(now, rendering)}`);
      return row?.n ?? 0;
    },

    /**
     * Renders and stores the chunks that are not fresh at `now` (renderStatement), as many a statement as nextChunks
     * allows; returns how many. Does nothing while another process renders.
     */
    async refresh(now: Date): Promise<number> {
      let rendered = 0;
      for (let limit = FIRST_CHUNKS; ; ) {
        const rows = await db.transaction(async (tx) => {
          const [lock] = rowsOf<{ taken: boolean }>(await tx.execute(sql`select pg_try_advisory_xact_lock(${DASHBOARD_RENDER_LOCK_ID}) as taken`));
          return lock?.taken ? rowsOf<{ rows: number }>(await tx.execute(renderStatement(now, limit, rendering))).map((chunk) => chunk.rows) : [];
        });
        rendered += rows.length;
        if (rows.length < limit) return rendered;
        limit = nextChunks(limit, rows.reduce((sum, n) => sum + n, 0), RENDERED_ROWS);
      }
    },
  };
}

export type Dashboard = ReturnType<typeof createDashboard>;
