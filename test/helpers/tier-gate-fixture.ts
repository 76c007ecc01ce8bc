import { tierAgentsOf } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import type { LearnedParams } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { fitTier, initialParams, type TierParams } from '../../src/learner/tiers-policy.js';
import { randomTierRows } from './tier-server.js';

/** The cheap-suffices tier world as the activation gate's tier tests judge it, and a joint version fitted on it. */
export function cheapSufficesGate() {
  const tw = loadTierWorld('cheap-suffices');
  const pipeline = tw.pipeline;
  const agents = tierAgentsOf(pipeline);
  const encoder = compileFeatures(worldFeatures(tw.world).features);
  /** A joint version fitted on random joint actions of the world (a reasonable candidate). */
  const fitted = (seed: number): TierParams => fitTier(initialParams(agents, encoder.dim, 10_000), agents, randomTierRows(tw, encoder, 1500, mulberry32(seed)), { steps: 200, lr: 0.03 }).params;
  return { tw, pipeline, agents, encoder, params: { costWeight: 0 } as LearnedParams, names: tw.agents.map((a) => a.name), T: tw.totalTokens, opts: { epsilon: 0, perturbation: 0.5, costWeight: 0 }, fitted };
}
