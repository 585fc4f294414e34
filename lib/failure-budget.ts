/**
 * A budget of failures per key: up to `limit` failures at once, then one more every `windowSeconds / limit` seconds
 * as they drain (a leaky bucket, kept as the time the key's failures will have drained). Only failures spend it;
 * while a key's budget is spent the caller refuses every attempt of that key, so guessing cannot go faster than the
 * drain. At most `maxKeys` keys are remembered, the least recently failed leave first, so memory stays bounded
 * whatever keys callers invent. A limit of 0 turns the budget off.
 */
export type FailureBudget = {
  /** Seconds until `key` may try again; 0 when it may now. */
  waitSeconds(key: string): number;
  /** Counts one failure of `key`; true when that spent its budget. */
  spend(key: string): boolean;
};

export function createFailureBudget(options: { limit: number; windowSeconds: number; maxKeys: number; now?: () => number }): FailureBudget {
  const { limit, maxKeys } = options;
  const now = options.now ?? (() => performance.now() / 1000);
  const interval = options.windowSeconds / limit;
  const room = (limit - 1) * interval;
  const drainedAt = new Map<string, number>();

  /** Seconds until the failures counted for `key` have drained. */
  function pending(key: string): number {
    const left = (drainedAt.get(key) ?? 0) - now();
    if (left > 0) return left;
    drainedAt.delete(key);
    return 0;
  }

  return {
    waitSeconds(key) {
      if (limit === 0) return 0;
      const wait = pending(key) - room;
      return wait > 0 ? Math.ceil(wait) : 0;
    },

    spend(key) {
      if (limit === 0) return false;
      const left = pending(key) + interval;
      // Re-inserted, so the Map's first key is always the least recently failed.
      drainedAt.delete(key);
      drainedAt.set(key, now() + left);
      if (drainedAt.size > maxKeys) drainedAt.delete(drainedAt.keys().next().value!);
      return left > room;
    },
  };
}
