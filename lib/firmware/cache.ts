/**
 * Stored firmware images in memory: one shared copy of each, however many devices download it.
 *
 * Node cannot hand a file to the kernel the way nginx does with sendfile; reading every download from disk in
 * chunks costs a read, a buffer and an event-loop turn per chunk per download, and held the server to about a third
 * of nginx's throughput. A stored image never changes (its name holds its SHA-256 and a random part; a new upload
 * gets a new name), so one copy read once can serve every download: the socket writes straight from it, a stalled
 * client holds nothing more, and memory does not grow with the number of downloads. The copies together stay
 * within a byte budget (the least recently used leave first); an image larger than the budget is not kept.
 */
export type ImageCache = ReturnType<typeof createImageCache>;

type Entry = { size: number; bytes: Promise<Buffer> };

export function createImageCache(budgetBytes: number) {
  // A Map iterates in insertion order; a hit is re-inserted, so the first entry is the least recently used.
  const entries = new Map<string, Entry>();
  let used = 0;

  const forget = (key: string) => {
    const entry = entries.get(key);
    if (!entry) return;
    entries.delete(key);
    used -= entry.size;
  };

  return {
    /**
     * The bytes of the image `key` (`size` bytes), read by `load` on the first request only: requests that arrive
     * while it loads share the same read. Null when the image does not fit the budget (read it from disk instead).
     * A failed load is not kept, so the next request tries again.
     */
    get(key: string, size: number, load: () => Promise<Buffer>): Promise<Buffer> | null {
      const hit = entries.get(key);
      if (hit) {
        entries.delete(key);
        entries.set(key, hit);
        return hit.bytes;
      }
      if (size > budgetBytes) return null;
      for (const [oldest] of entries) {
        if (used + size <= budgetBytes) break;
        forget(oldest);
      }
      const entry: Entry = { size, bytes: load() };
      entries.set(key, entry);
      used += size;
      entry.bytes.catch(() => {
        if (entries.get(key) === entry) forget(key);
      });
      return entry.bytes;
    },

    /** Drops an image that is no longer served (replaced or deleted); downloads holding it finish with it. */
    forget,

    /** Bytes held now. */
    usedBytes: () => used,
  };
}
