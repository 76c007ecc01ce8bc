import type { Arm, ArmResolver } from '../kernel/extension-points.js';
import type { Keys } from '../redis/keys.js';

/** Arms and their resolvers are an extension point (src/kernel/extension-points.ts). */
export type { Arm, ArmResolver } from '../kernel/extension-points.js';

export function strategyArm(keys: Keys, pipeline: string, strategyId: string): Arm {
  const base = keys.pipeline(pipeline, 'stats', 'strategy', strategyId);
  return { summary: base, agents: `${base}:agents` };
}

export const strategyArms =
  (keys: Keys): ArmResolver =>
  (d) => [strategyArm(keys, d.pipeline, d.strategy)];
