/**
 * What a rollout sees its admitted devices do on the device API: full downloads of its target and the config fetch
 * that follows a restart. Only a device with devices.rollout_id set (read with its row anyway) costs a write; the
 * write is one UPDATE of its rollout_devices row, off the response path.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { Database } from "../../db/client.ts";
import { firmwareVersions, rolloutDevices, rollouts } from "../../db/schema.ts";
import type { DevicePrincipal } from "../identity/principal.ts";
import { errorMessage, type Logger } from "../logger.ts";

/** How soon after a download a config fetch counts as a restart on it (the firmware restarts at once; a boot takes seconds). */
const RESTART_WITHIN_MS = 120_000;

const watched = inArray(rolloutDevices.state, ["admitted", "succeeded"]);

export function createRolloutEvents(deps: { db: Database; logger: Logger }) {
  const { db, logger } = deps;
  const inFlight = new Set<Promise<unknown>>();
  function quietly(what: string, write: Promise<unknown>): void {
    const done = write.catch((error) => logger.warn(`A rollout did not record a device's ${what}`, { error: errorMessage(error) }));
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  }

  return {
    /** The last byte of a full image with `sha256` went out to the device: counted when it is its rollout's target. */
    downloaded({ device }: DevicePrincipal, sha256: string): void {
      if (device.rolloutId === null) return;
      const now = new Date();
      const isTarget = sql`${sha256} = (select ${firmwareVersions.sha256} from ${rollouts} join ${firmwareVersions} on ${firmwareVersions.id} = ${rollouts.versionId} where ${rollouts.id} = ${rolloutDevices.rolloutId})`;
      quietly(
        "download",
        db
          .update(rolloutDevices)
          .set({
            downloads: sql`${rolloutDevices.downloads} + 1`,
            firstDownloadAt: sql`least(${rolloutDevices.firstDownloadAt}, ${now.toISOString()}::timestamptz)`,
            lastDownloadAt: sql`greatest(${rolloutDevices.lastDownloadAt}, ${now.toISOString()}::timestamptz)`,
          })
          .where(and(eq(rolloutDevices.rolloutId, device.rolloutId), eq(rolloutDevices.deviceId, device.id), watched, isTarget)),
      );
    },

    /**
     * GET /iot/config (once per boot with the deployed firmware): its time is kept, and one soon after a full
     * download counts as the device restarting on the image it wrote (lib/rollouts/verdict.ts).
     */
    configFetched({ device }: DevicePrincipal): void {
      if (device.rolloutId === null) return;
      const now = new Date();
      // Compared with this request's own time: the writes of one device's requests may land in any order.
      const at = sql`${now.toISOString()}::timestamptz`;
      const restarted = sql`coalesce(${rolloutDevices.lastDownloadAt} < ${at} and ${rolloutDevices.lastDownloadAt} > ${at} - make_interval(secs => ${RESTART_WITHIN_MS / 1000}), false)`;
      quietly(
        "config fetch",
        db
          .update(rolloutDevices)
          .set({ configAt: sql`greatest(${rolloutDevices.configAt}, ${at})`, restartsAfterDownload: sql`${rolloutDevices.restartsAfterDownload} + (case when ${restarted} then 1 else 0 end)` })
          .where(and(eq(rolloutDevices.rolloutId, device.rolloutId), eq(rolloutDevices.deviceId, device.id), watched)),
      );
    },

    /** Waits for the writes under way (tests; shutdown before the database closes). */
    flush: async () => void (await Promise.all(inFlight)),
  };
}

export type RolloutEvents = ReturnType<typeof createRolloutEvents>;
