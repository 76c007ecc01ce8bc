import type { DecisionRecord } from '../allocation/decisions.js';
import type { Keys } from '../redis/keys.js';

/**
 * An arm is a bucket of statistics an outcome counts towards: always its strategy; rollout experiments
 * add their variant. Arms of a decision must live in its pipeline's slot (one Lua call updates all).
 */
export interface Arm {
  readonly summary: string;
  readonly agents: string;
}

export type ArmResolver = (decision: DecisionRecord) => readonly Arm[];

export function strategyArm(keys: Keys, pipeline: string, strategyId: string): Arm {
  const base = keys.pipeline(pipeline, 'stats', 'strategy', strategyId);
  return { summary: base, agents: `${base}:agents` };
}

export const strategyArms =
  (keys: Keys): ArmResolver =>
  (d) => [strategyArm(keys, d.pipeline, d.strategy)];
