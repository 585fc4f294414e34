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
import { LRUCache } from "lru-cache";

export type ImageCache = ReturnType<typeof createImageCache>;

export function createImageCache(budgetBytes: number) {
  // The pending read itself is stored, with the size it will have, so the budget counts an image from its first
  // request and later requests share that read. (lru-cache's fetchMethod counts a read only once it has finished.)
  // lru-cache needs a positive bound: with a budget of 0 every image is too large and none is stored.
  const images = new LRUCache<string, Promise<Buffer>>({ maxSize: Math.max(budgetBytes, 1) });

  return {
    /**
     * The bytes of the image `key` (`size` bytes), read by `load` on the first request only: requests that arrive
     * while it loads share the same read. Null when the image does not fit the budget (read it from disk instead).
     * A failed load is not kept, so the next request tries again.
     */
    get(key: string, size: number, load: () => Promise<Buffer>): Promise<Buffer> | null {
      const hit = images.get(key);
      if (hit) return hit;
      if (size > budgetBytes) return null;
      const bytes = load();
      images.set(key, bytes, { size });
      bytes.catch(() => {
        if (images.peek(key) === bytes) images.delete(key);
      });
      return bytes;
    },

    /** Drops an image that is no longer served (replaced or deleted); downloads holding it finish with it. */
    forget(key: string): void {
      images.delete(key);
    },

    /** Drops every image whose key starts with `prefix` (a deleted model's directory). */
    forgetUnder(prefix: string): void {
      for (const key of [...images.keys()]) if (key.startsWith(prefix)) images.delete(key);
    },

    /** Bytes held now. */
    usedBytes: () => images.calculatedSize,
  };
}
