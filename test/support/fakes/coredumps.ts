/** CoreDumpService in memory, held to the PostgreSQL one by test/support/coredump-contract.ts. */
import { createHash } from "node:crypto";
import { type CoreDumpService, coreDumpNotFound, type CoreDumpSettings, summarize } from "../../../lib/coredumps/service.ts";
import type { CoreDumpRow } from "../../../db/schema.ts";
import type { FakeWorld } from "./world.ts";

const DAY_MS = 86_400_000;

export function fakeCoreDumpService(world: FakeWorld, settings: CoreDumpSettings): CoreDumpService {
  let rows: CoreDumpRow[] = [];
  const newestFirst = (a: CoreDumpRow, b: CoreDumpRow) => b.receivedAt.getTime() - a.receivedAt.getTime() || b.id - a.id;
  const find = (deviceId: number, id: number) => rows.find((row) => row.deviceId === deviceId && row.id === id);
  return {
    async save(dump) {
      const row: CoreDumpRow = {
        id: world.nextId(),
        ...dump,
        content: Buffer.from(dump.content),
        size: dump.content.length,
        sha256: createHash("sha256").update(dump.content).digest("hex"),
        receivedAt: new Date(),
      };
      rows.push(row);
      const keep = new Set(rows.filter((r) => r.deviceId === dump.deviceId).sort(newestFirst).slice(0, settings.maxPerDevice));
      rows = rows.filter((r) => r.deviceId !== dump.deviceId || keep.has(r));
      return summarize(row);
    },
    async list(deviceId) {
      return rows.filter((row) => row.deviceId === deviceId && world.devices.has(deviceId)).sort(newestFirst).map(summarize);
    },
    async get(deviceId, id) {
      const row = find(deviceId, id);
      if (!row || !world.devices.has(deviceId)) throw coreDumpNotFound(id);
      return { ...summarize(row), content: row.content };
    },
    async remove(deviceId, id) {
      const row = find(deviceId, id);
      if (!row || !world.devices.has(deviceId)) throw coreDumpNotFound(id);
      rows = rows.filter((r) => r !== row);
    },
    async crashCounts(modelId, since) {
      const counts = new Map<string | null, number>();
      for (const row of rows) if (row.deviceModelId === modelId && row.receivedAt >= since) counts.set(row.firmwareVersion, (counts.get(row.firmwareVersion) ?? 0) + 1);
      return [...counts]
        .map(([firmware_version, crashes]) => ({ firmware_version, crashes }))
        .sort((a, b) => (a.firmware_version === null ? 1 : b.firmware_version === null ? -1 : a.firmware_version < b.firmware_version ? -1 : 1));
    },
    async isKnownVersion(modelId, version) {
      return [...world.versions.values()].some((v) => v.deviceModelId === modelId && v.version === version);
    },
    async runRetention(now = new Date()) {
      const before = rows.length;
      rows = rows.filter((row) => row.receivedAt.getTime() >= now.getTime() - settings.retentionDays * DAY_MS);
      return before - rows.length;
    },
  };
}
