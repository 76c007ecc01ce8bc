import { tierAgentsOf } from '@apportion/sdk/engine';
import { compileFeatures, type FeatureEncoder } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import type { ModelRegistry, ModelVersion } from '../../src/learner/registry.js';
import type { LearnedParams } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { fitTier, initialParams, serializeTierParams, type TierParams } from '../../src/learner/tiers-policy.js';
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

/** Saves `tiers` as a joint (model-and-tokens) version of `pipelineId` (token weights: the untrained prior, never served). */
export function saveTierVersion(reg: ModelRegistry, pipelineId: string, enc: FeatureEncoder, agents: readonly string[], totalTokens: number, tiers: TierParams): Promise<ModelVersion> {
  return reg.save(pipelineId, initialWeights(enc.dim, agents.length, totalTokens, mulberry32(1)), {
    signature: enc.signature,
    agents: [...agents],
    metrics: { rows: 0, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'tiers', costWeight: 0, buffer: 0 },
    kind: 'tiers',
    tiers: serializeTierParams(tiers),
  });
}
