/**
 * Device logs (docs/device-logs.md): lines from the MQTT log topics and POST /iot/logs are stamped with the time
 * they arrived, held in a bounded buffer and written in batches; admins read one device's window of them; retention
 * keeps them bounded by age and per device by size.
 */
import { asc, desc, eq } from "drizzle-orm";
import { LRUCache } from "lru-cache";
import type { Database } from "../../db/client.ts";
import { devices } from "../../db/schema.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type LineLimits, parsePayload, type ParsedPayload, type RejectReason } from "./lines.ts";
import type { DeviceLogMetrics } from "./metrics.ts";
import { type LogPage, type PageQuery, readPage } from "./page.ts";
import type { LogStore } from "./store.ts";
import { createLogWriter, type NewLine } from "./writer.ts";

export type DeviceLogSettings = LineLimits & {
  retentionDays: number;
  maxLinesPerDevice: number;
  ratePerSecond: number;
  flushMs: number;
  batchLines: number;
  bufferLines: number;
};

export type IngestResult = { accepted: number; rejected: number };
export type RetentionSummary = { days_dropped: number; lines_trimmed: number };

export type DeviceLogService = {
  /** A payload a device POSTed (the device is the token's): 413 with too many lines, 429 over its rate, 503 when full. */
  ingestHttp(deviceId: number, text: string): IngestResult;
  /** A payload from the shared topic (lines name their device by entity_id) or a device's own topic (deviceClientId). */
  ingestMqtt(text: string, deviceClientId: string | null): Promise<IngestResult>;
  read(deviceId: number, query: PageQuery): Promise<LogPage>;
  runRetention(now?: Date): Promise<RetentionSummary>;
  /** Writes what waits in memory now (tests, shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
};

/** How long the entity_id and client_id → device map is trusted; a miss reloads it at most this often. */
const DIRECTORY_TTL_MS = 60_000;
const UNKNOWN_TTL_MS = 5_000;
/** Devices whose rate buckets are remembered. */
const RATE_KEYS = 10_000;
/** A device may send this many seconds' worth of lines at once. */
const BURST_SECONDS = 10;

const tooManyLines = (limit: number) =>
  new AppError(413, "TOO_MANY_LINES", `The request holds more than ${limit} log lines; send them in smaller batches.`, { limit_lines: limit });
const rateLimited = (seconds: number) =>
  new AppError(429, "RATE_LIMITED", `This device sends log lines faster than allowed; try again in ${seconds} seconds.`, { retry_after_seconds: seconds }, { "retry-after": String(seconds) });
const bufferFull = () =>
  new AppError(503, "LOG_BUFFER_FULL", "The server cannot take more log lines right now; send them again shortly.", null, { "retry-after": "5" });

/** Which device a line belongs to: by the config's deviceEntityId (shared topic) or its client id (its own topic). */
export type DeviceDirectory = { byEntity(entityId: string): Promise<number | null>; byClient(clientId: string): Promise<number | null> };

/**
 * entity_id and client_id → device id: the whole fleet read at once (thousands of rows) and again every
 * DIRECTORY_TTL_MS; a name not in it is looked up on its own (a device created since), and a name that is nowhere
 * is remembered as unknown for a while, so a stranger's lines on a shared broker cost no query each.
 */
export function createDeviceDirectory(db: Database): DeviceDirectory {
  let maps: { entity: Map<string, number>; client: Map<string, number> } | null = null;
  let loadedAt = Number.NEGATIVE_INFINITY;
  let loading: Promise<void> | null = null;
  const unknown = new LRUCache<string, true>({ max: RATE_KEYS, ttl: UNKNOWN_TTL_MS });
  const load = () =>
    (loading ??= (async () => {
      const rows = await db.select({ id: devices.id, clientId: devices.clientId, entityId: devices.deviceEntityId }).from(devices).orderBy(desc(devices.id));
      // Ordered so that, of devices sharing an entity id, the oldest wins.
      maps = { entity: new Map(rows.filter((row) => row.entityId !== null).map((row) => [row.entityId!, row.id])), client: new Map(rows.map((row) => [row.clientId, row.id])) };
      loadedAt = performance.now();
    })().finally(() => {
      loading = null;
    }));
  async function lookup(kind: "entity" | "client", key: string): Promise<number | null> {
    if (!maps || performance.now() - loadedAt > DIRECTORY_TTL_MS) await load();
    const known = maps![kind].get(key);
    if (known !== undefined) return known;
    if (unknown.has(`${kind}:${key}`)) return null;
    const column = kind === "entity" ? devices.deviceEntityId : devices.clientId;
    const [found] = await db.select({ id: devices.id }).from(devices).where(eq(column, key)).orderBy(asc(devices.id)).limit(1);
    if (!found) {
      unknown.set(`${kind}:${key}`, true);
      return null;
    }
    maps![kind].set(key, found.id);
    return found.id;
  }
  return { byEntity: (entityId) => lookup("entity", entityId), byClient: (clientId) => lookup("client", clientId) };
}

/** Per-device token buckets of lines per second. */
function createRateLimit(perSecond: number, burst: number) {
  const buckets = new LRUCache<number, { tokens: number; at: number }>({ max: RATE_KEYS });
  return (deviceId: number, lines: number): number => {
    const now = performance.now();
    const bucket = buckets.get(deviceId) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    buckets.set(deviceId, bucket);
    if (bucket.tokens >= lines) {
      bucket.tokens -= lines;
      return 0;
    }
    return Math.max(1, Math.ceil((lines - bucket.tokens) / perSecond));
  };
}

export function createDeviceLogService(deps: {
  store: LogStore;
  directory: DeviceDirectory;
  settings: DeviceLogSettings;
  metrics: DeviceLogMetrics;
  logger: Logger;
  logDatabaseOutage(error: unknown): void;
}): DeviceLogService {
  const { settings, metrics } = deps;
  const { store, directory } = deps;
  const writer = createLogWriter({
    write: store.insert,
    capacity: settings.bufferLines,
    batchLines: settings.batchLines,
    flushMs: settings.flushMs,
    metrics,
    logger: deps.logger,
    logDatabaseOutage: deps.logDatabaseOutage,
  });
  const overRate = createRateLimit(settings.ratePerSecond, Math.max(settings.ratePerSecond * BURST_SECONDS, settings.maxLines));

  const countRejected = (source: string, rejected: ParsedPayload["rejected"]) => {
    let total = 0;
    for (const [reason, count] of Object.entries(rejected) as [RejectReason, number][]) {
      metrics.rejected.inc({ source, reason }, count);
      total += count;
    }
    return total;
  };

  return {
    ingestHttp(deviceId, text) {
      const parsed = parsePayload(text, settings);
      if (parsed.rejected.too_many_lines) throw tooManyLines(settings.maxLines);
      const wait = overRate(deviceId, parsed.lines.length);
      if (wait > 0) throw rateLimited(wait);
      const lines: NewLine[] = parsed.lines.map((line) => ({ deviceId, message: line.message, attributes: line.attributes }));
      if (!writer.offer(lines)) throw bufferFull();
      metrics.received.inc({ source: "http" }, lines.length);
      return { accepted: lines.length, rejected: countRejected("http", parsed.rejected) };
    },

    async ingestMqtt(text, deviceClientId) {
      const parsed = parsePayload(text, settings);
      const lines: NewLine[] = [];
      const topicDevice = deviceClientId === null ? null : await directory.byClient(deviceClientId);
      for (const line of parsed.lines) {
        const deviceId = deviceClientId === null ? (line.entityId === undefined ? null : await directory.byEntity(line.entityId)) : topicDevice;
        if (deviceId === null) parsed.rejected.unknown_entity = (parsed.rejected.unknown_entity ?? 0) + 1;
        else lines.push({ deviceId, message: line.message, attributes: line.attributes });
      }
      await writer.add(lines);
      metrics.received.inc({ source: "mqtt" }, lines.length);
      return { accepted: lines.length, rejected: countRejected("mqtt", parsed.rejected) };
    },

    read(deviceId, query) {
      const oldest = writer.oldestPendingUs();
      const visibleUntil = new Date(Math.min(Date.now(), oldest === null ? Number.POSITIVE_INFINITY : Math.floor(oldest / 1000)));
      return readPage((range) => store.read(deviceId, range), query, visibleUntil);
    },

    async runRetention(now = new Date()) {
      await store.prepare(now);
      const daysDropped = await store.dropOlderThan(now, settings.retentionDays);
      const linesTrimmed = await store.trimDevices(settings.maxLinesPerDevice);
      metrics.retentionDeleted.inc({ reason: "age" }, daysDropped);
      metrics.retentionDeleted.inc({ reason: "size" }, linesTrimmed);
      return { days_dropped: daysDropped, lines_trimmed: linesTrimmed };
    },

    flush: () => writer.flush(),
    close: () => writer.close(),
  };
}
