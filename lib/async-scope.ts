import { AsyncLocalStorage } from "node:async_hooks";

/**
 * A value that code further down an async call chain can read without it being passed along (AsyncLocalStorage),
 * switched on only while something runs in it. On Node 20 an enabled AsyncLocalStorage hooks every promise of the
 * process, whoever made it: that cost device requests ~7 % of their CPU (docs/performance.md). Switched off when the
 * last run ends, it costs nothing between runs.
 */
export function createAsyncScope<T>() {
  const storage = new AsyncLocalStorage<T>();
  let running = 0;
  return {
    async run<R>(value: T, work: () => Promise<R>): Promise<R> {
      running++;
      try {
        return await storage.run(value, work);
      } finally {
        if (--running === 0) storage.disable();
      }
    },
    /** The value of the run this code is part of; undefined outside any. */
    get: (): T | undefined => storage.getStore(),
  };
}
