import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createFailureBudget } from "../lib/failure-budget.ts";

/** A budget on a clock the test moves: 3 failures, one more every 10 s (window 30 s). */
function budget(options: { limit?: number; maxKeys?: number } = {}) {
  let seconds = 1000;
  const failures = createFailureBudget({ limit: options.limit ?? 3, windowSeconds: 30, maxKeys: options.maxKeys ?? 100, now: () => seconds });
  return { failures, pass: (by: number) => (seconds += by) };
}

describe("failure budget", () => {
  it("allows `limit` failures, then one more each time a share of the window has passed", () => {
    const { failures, pass } = budget();
    assert.deepEqual([failures.spend("a"), failures.spend("a")], [false, false]);
    assert.equal(failures.waitSeconds("a"), 0);
    assert.equal(failures.spend("a"), true, "the third failure spends it");
    assert.equal(failures.waitSeconds("a"), 10);
    pass(4);
    assert.equal(failures.waitSeconds("a"), 6);
    pass(6);
    assert.equal(failures.waitSeconds("a"), 0, "one failure has drained");
    assert.equal(failures.spend("a"), true);
    assert.equal(failures.waitSeconds("a"), 10, "and the next one spends it again");
    pass(30);
    assert.deepEqual([failures.spend("a"), failures.spend("a"), failures.waitSeconds("a")], [false, false, 0], "drained in a window");
  });

  it("keeps keys apart", () => {
    const { failures } = budget();
    for (let i = 0; i < 3; i++) failures.spend("a");
    assert.equal(failures.waitSeconds("a"), 10);
    assert.equal(failures.waitSeconds("b"), 0);
  });

  it("remembers at most maxKeys keys, forgetting the least recently failed", () => {
    const { failures } = budget({ maxKeys: 2 });
    for (const [key, times] of [["a", 3], ["b", 3], ["a", 1], ["c", 3]] as const) for (let i = 0; i < times; i++) failures.spend(key);
    assert.equal(failures.waitSeconds("a"), 20, "failed again after b, so kept");
    assert.equal(failures.waitSeconds("c"), 10);
    assert.equal(failures.waitSeconds("b"), 0, "forgotten");
  });

  it("a limit of 0 never refuses", () => {
    const { failures } = budget({ limit: 0 });
    for (let i = 0; i < 50; i++) assert.equal(failures.spend("a"), false);
    assert.equal(failures.waitSeconds("a"), 0);
  });
});
