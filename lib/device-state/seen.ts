/**
 * `last_seen_at` and header reports of every authenticated device request, and full firmware downloads, coalesced: a
 * request writes nothing unless its device's row (read anyway to authenticate it) is due — not seen for a minute, seen
 * only before its last download finished (lib/device-state/running.ts), or its headers report something new. Due
 * devices and finished downloads wait in memory (per device: its latest sighting, and its latest full download's model,
 * SHA-256 and time) and are written every few seconds in one UPDATE … FROM (VALUES …), so 10,000 devices polling cost
 * at most one row write per device per minute, many downloads of one device one write per flush, and no request waits
 * for the database. The WHERE clause checks the same rule again, so replicas noting the same device do not add writes.
 * The buffer is bounded: when it is full, or the database is down, sightings and downloads are dropped (counted); the
 * next request of the device notes it again (a dropped download stays unrecorded).
 */
import { type SQL, sql } from "drizzle-orm";
import type { AnyPgColumn } from "drizzle-orm/pg-core";
import type { Database } from "../../db/client.ts";
import { devices, firmwareVersions, type DeviceRow } from "../../db/schema.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { HeaderReport } from "./reports.ts";

const SEEN_RESOLUTION_MS = 60_000;
const FLUSH_EVERY_MS = 5_000;
const MAX_PENDING = 100_000;
const ROWS_PER_STATEMENT = 1_000;

type Report = HeaderReport["report"];
/** The latest full download of a device: its model and the image's SHA-256 name the version (resolved when written). */
type Download = { modelId: number; sha256: string; at: Date };
/**
 * `seenAt` null: only a download is waiting (the request that made it was noted, or not due, before it). `reportedAt`:
 * the time of the latest request whose headers reported something (null: none did).
 */
type Pending = { id: number; seenAt: Date | null; report: Report; reportedAt: Date | null; download: Download | null };
export type SeenDevice = Pick<DeviceRow, "id" | "lastSeenAt" | "downloadedAt" | "reportedFirmwareVersion" | "reportedElfSha256" | "otaState">;

const changes = (device: SeenDevice, report: Report) =>
  (report.firmware_version !== undefined && report.firmware_version !== device.reportedFirmwareVersion) ||
  (report.elf_sha256 !== undefined && report.elf_sha256 !== device.reportedElfSha256) ||
  (report.ota_state !== undefined && report.ota_state !== device.otaState);

const reportsAnything = (report: Report) => report.firmware_version !== undefined || report.elf_sha256 !== undefined || report.ota_state !== undefined;

/** Whether a request of `device` at `now` has anything to write. */
export function isDue(device: SeenDevice, now: Date, report: Report): boolean {
  const { lastSeenAt, downloadedAt } = device;
  if (lastSeenAt === null || now.getTime() - lastSeenAt.getTime() >= SEEN_RESOLUTION_MS) return true;
  return (downloadedAt !== null && lastSeenAt <= downloadedAt && now > downloadedAt) || changes(device, report);
}

export type SeenCounters = { written(rows: number): void; dropped(sightings: number): void };

export function createSeenBuffer(deps: { db: Database; logger: Logger; counters: SeenCounters; flushEveryMs?: number }) {
  const { db, logger, counters } = deps;
  let pending = new Map<number, Pending>();
  let flushing: Promise<void> | null = null;

  async function write(batch: Pending[]): Promise<number> {
    const rows = batch.map(
      ({ id, seenAt, report, reportedAt, download }) =>
        sql`(${id}::int, ${seenAt?.toISOString() ?? null}::timestamptz, ${reportedAt?.toISOString() ?? null}::timestamptz, ${report.firmware_version ?? null}::text, ${report.elf_sha256 ?? null}::text, ${report.ota_state ?? null}::text, ${download?.modelId ?? null}::int, ${download?.sha256 ?? null}::text, ${download?.at.toISOString() ?? null}::timestamptz)`,
    );
    const v = sql`(values ${sql.join(rows, sql`, `)}) as v(id, seen_at, reported_at, firmware_version, elf_sha256, ota_state, model_id, sha256, downloaded_at)`;
    // A download newer than the one stored replaces it (greatest() skips nulls); a version deleted meanwhile is null.
    const newerDownload = sql`v.downloaded_at is not null and (${devices.downloadedAt} is null or v.downloaded_at >= ${devices.downloadedAt})`;
    const reported = sql`(v.firmware_version is distinct from null and v.firmware_version is distinct from ${devices.reportedFirmwareVersion})
      or (v.elf_sha256 is distinct from null and v.elf_sha256 is distinct from ${devices.reportedElfSha256})
      or (v.ota_state is distinct from null and v.ota_state is distinct from ${devices.otaState})`;
    // Replicas flush their own buffers: a report older than the stored one (another replica wrote a newer one first)
    // must not bring back what the device ran before, e.g. the version it had before a rollout's update.
    const notOlder = sql`(${devices.reportedAt} is null or v.reported_at >= ${devices.reportedAt})`;
    const keepNewest = (reportedValue: SQL, column: AnyPgColumn) => sql`case when ${notOlder} then coalesce(${reportedValue}, ${column}) else ${column} end`;
    const updated = await db
      .update(devices)
      .set({
        lastSeenAt: sql`greatest(${devices.lastSeenAt}, v.seen_at)`,
        reportedFirmwareVersion: keepNewest(sql`v.firmware_version`, devices.reportedFirmwareVersion),
        reportedElfSha256: keepNewest(sql`v.elf_sha256`, devices.reportedElfSha256),
        otaState: keepNewest(sql`v.ota_state`, devices.otaState),
        reportedAt: sql`case when (${reported}) and ${notOlder} then v.reported_at else ${devices.reportedAt} end`,
        downloadedVersionId: sql`case when ${newerDownload} then (select ${firmwareVersions.id} from ${firmwareVersions}
          where ${firmwareVersions.deviceModelId} = v.model_id and ${firmwareVersions.sha256} = v.sha256) else ${devices.downloadedVersionId} end`,
        downloadedAt: sql`greatest(${devices.downloadedAt}, v.downloaded_at)`,
      })
      .from(v)
      .where(
        sql`${devices.id} = v.id and (${devices.lastSeenAt} is null
          or ${devices.lastSeenAt} <= v.seen_at - make_interval(secs => ${SEEN_RESOLUTION_MS / 1000})
          or (${devices.lastSeenAt} <= ${devices.downloadedAt} and v.seen_at > ${devices.downloadedAt})
          or ${reported}
          or v.downloaded_at is not null)`,
      )
      .returning({ id: devices.id });
    return updated.length;
  }

  async function flushPending(): Promise<void> {
    const batch = [...pending.values()];
    pending = new Map();
    for (let start = 0; start < batch.length; start += ROWS_PER_STATEMENT) {
      const part = batch.slice(start, start + ROWS_PER_STATEMENT);
      try {
        counters.written(await write(part));
      } catch (error) {
        counters.dropped(part.length);
        logger.warn("Device sightings and downloads dropped: the database did not take them", { devices: part.length, error: errorMessage(error) });
      }
    }
  }

  /** Writes what is pending now; waits for a flush already running first. */
  async function flush(): Promise<void> {
    while (flushing) await flushing;
    if (pending.size === 0) return;
    flushing = flushPending().finally(() => (flushing = null));
    await flushing;
  }

  const timer = setInterval(() => void flush(), deps.flushEveryMs ?? FLUSH_EVERY_MS);
  timer.unref();

  return {
    /** A request of `device` at `now` whose headers reported `report` (validated). Never waits, never throws. */
    note(device: SeenDevice, now: Date, report: Report): void {
      const reports = reportsAnything(report);
      const known = pending.get(device.id);
      if (known) {
        if (known.seenAt === null || known.seenAt < now) known.seenAt = now;
        // A report is as old as the request that made it: a later request that reports nothing (a device polling
        // without headers) must not make it look newer than what the device told another replica since.
        if (reports && (known.reportedAt === null || known.reportedAt <= now)) {
          Object.assign(known.report, report);
          known.reportedAt = now;
        }
      } else if (isDue(device, now, report)) {
        if (pending.size >= MAX_PENDING) return counters.dropped(1);
        pending.set(device.id, { id: device.id, seenAt: now, report: { ...report }, reportedAt: reports ? now : null, download: null });
      }
    },
    /**
     * The last byte of a full image with `sha256` of model `modelId` went out to device `deviceId` at `at`. Kept in
     * memory until the next flush; a later one of the same device replaces it. Never waits, never throws.
     */
    downloaded(deviceId: number, modelId: number, sha256: string, at: Date): void {
      const known = pending.get(deviceId);
      if (known) {
        if (known.download === null || known.download.at <= at) known.download = { modelId, sha256, at };
      } else {
        if (pending.size >= MAX_PENDING) return counters.dropped(1);
        pending.set(deviceId, { id: deviceId, seenAt: null, report: {}, reportedAt: null, download: { modelId, sha256, at } });
      }
    },
    flush,
    /** Stops the timer and writes what is pending (at shutdown). */
    async close(): Promise<void> {
      clearInterval(timer);
      await flush();
    },
  };
}

export type SeenBuffer = ReturnType<typeof createSeenBuffer>;
