/**
 * The device-log service of lib/device-logs/ over an in-memory store and the shared rows: parsing, rate limits, the
 * bounded writer and the page rules are the real ones. The store is held to the PostgreSQL one by
 * test/support/log-store-contract.ts (test/device-logs-store-contract.test.ts, test/unit/fakes.test.ts).
 */
import type { Services } from "../../../lib/context.ts";
import { deviceLogSettings } from "../../../lib/context.ts";
import type { DeviceLogMetrics } from "../../../lib/device-logs/metrics.ts";
import { createDeviceLogService, type DeviceDirectory } from "../../../lib/device-logs/service.ts";
import { likePattern, type LogRow, type LogStore, type StoredLine } from "../../../lib/device-logs/store.ts";
import type { Logger } from "../../../lib/logger.ts";
import type { FakeWorld } from "./world.ts";

const DAY_MS = 86_400_000;
const dayOf = (stampUs: number) => Math.floor(stampUs / 1000 / DAY_MS);

/** A LIKE pattern (likePattern) as a regular expression, case-insensitive. */
function likeRegExp(query: string): RegExp {
  const source = likePattern(query).replace(/\\(.)|%|_|[.*+?^${}()|[\]]/g, (match, escaped: string | undefined) =>
    escaped !== undefined ? escaped.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : match === "%" ? ".*" : match === "_" ? "." : `\\${match}`,
  );
  return new RegExp(`^${source}$`, "is");
}

export function fakeLogStore(): LogStore & { lines: StoredLine[] } {
  let lines: StoredLine[] = [];
  return {
    get lines() {
      return lines;
    },
    async insert(batch) {
      lines.push(...batch.map((line) => structuredClone(line)));
    },
    async read(deviceId, { start, end, query, limit }) {
      const match = query ? likeRegExp(query) : null;
      const startUs = start.getTime() * 1000;
      const endUs = end.getTime() * 1000;
      return lines
        .filter((line) => line.deviceId === deviceId && line.stampUs >= startUs && line.stampUs < endUs && (!match || match.test(line.message)))
        .sort((a, b) => a.stampUs - b.stampUs)
        .slice(0, limit)
        .map((line): LogRow => ({ ts: new Date(Math.floor(line.stampUs / 1000)), message: line.message }));
    },
    async prepare() {},
    async dropOlderThan(now, days) {
      const firstKept = Math.floor((now.getTime() - days * DAY_MS) / DAY_MS);
      const dropped = new Set(lines.filter((line) => dayOf(line.stampUs) < firstKept).map((line) => dayOf(line.stampUs)));
      lines = lines.filter((line) => dayOf(line.stampUs) >= firstKept);
      return dropped.size;
    },
    async trimDevices(maxLines) {
      const byDevice = new Map<number, StoredLine[]>();
      for (const line of lines) byDevice.set(line.deviceId, [...(byDevice.get(line.deviceId) ?? []), line]);
      const gone = new Set<StoredLine>();
      for (const own of byDevice.values()) {
        if (own.length <= maxLines) continue;
        own.sort((a, b) => a.stampUs - b.stampUs);
        for (const line of own.slice(0, own.length - maxLines)) gone.add(line);
      }
      lines = lines.filter((line) => !gone.has(line));
      return gone.size;
    },
  };
}

function fakeDirectory(world: FakeWorld): DeviceDirectory {
  const find = (match: (device: { clientId: string; deviceEntityId: string | null }) => boolean) =>
    [...world.devices.values()].sort((a, b) => a.id - b.id).find(match)?.id ?? null;
  return {
    byEntity: async (entityId) => find((device) => device.deviceEntityId === entityId),
    byClient: async (clientId) => find((device) => device.clientId === clientId),
  };
}

export function fakeDeviceLogService(world: FakeWorld, deps: { config: Services["config"]; metrics: DeviceLogMetrics; logger: Logger; logDatabaseOutage(error: unknown): void }) {
  const store = fakeLogStore();
  const service = createDeviceLogService({
    store,
    directory: fakeDirectory(world),
    settings: deviceLogSettings(deps.config),
    metrics: deps.metrics,
    logger: deps.logger,
    logDatabaseOutage: deps.logDatabaseOutage,
  });
  return { service, store };
}
