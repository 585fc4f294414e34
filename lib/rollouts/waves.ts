/** Which wave each device of a rollout belongs to (docs/rollouts.md, "Plan"). */
import type { RolloutPlan } from "../../db/schema.ts";

/**
 * `members` devices in rollout order, the first `canaries` of them the canary (wave 0); wave n (1-based) reaches
 * plan.waves[n - 1] percent of all members, cumulatively. Returns the wave of each position.
 */
export function wavesOf(members: number, canaries: number, waves: RolloutPlan["waves"]): number[] {
  const result: number[] = [];
  let wave = 1;
  for (let position = 0; position < members; position++) {
    if (position < canaries) {
      result.push(0);
      continue;
    }
    while (wave < waves.length && position >= Math.ceil((waves[wave - 1]! * members) / 100)) wave++;
    result.push(wave);
  }
  return result;
}

/** Failures after the canary that pause the rollout: more than max(1, threshold % of its devices). */
export const failuresAllowed = (plan: RolloutPlan, members: number) => Math.max(1, (plan.failure_threshold_percent * members) / 100);
