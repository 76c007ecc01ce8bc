import type { Arm, ArmResolver } from '../kernel/extension-points.js';
import type { Keys } from '../redis/keys.js';

/** Arms and their resolvers are an extension point (src/kernel/extension-points.ts). */
export type { Arm, ArmResolver } from '../kernel/extension-points.js';

export function strategyArm(keys: Keys, pipeline: string, strategyId: string): Arm {
  const base = keys.pipeline(pipeline, 'stats', 'strategy', strategyId);
  return { summary: base, agents: `${base}:agents` };
}

/**
 * `<p>:{pipeline:<id>}:deleted:strategy:<sid>`: the highest version of the strategy that was deleted (set by
 * OutcomeStats.forget, expiring once no outcome of a decision made before the delete can be applied). An outcome
 * of a decision made with that version or an older one leaves the strategy's statistics alone.
 */
export function strategyTombstone(keys: Keys, pipeline: string, strategyId: string): string {
  return keys.pipeline(pipeline, 'deleted', 'strategy', strategyId);
}

export const strategyArms =
  (keys: Keys): ArmResolver =>
  (d) => [{ ...strategyArm(keys, d.pipeline, d.strategy), retired: { key: strategyTombstone(keys, d.pipeline, d.strategy), version: d.strategyVersion } }];
