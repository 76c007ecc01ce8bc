import type { ExploreOptions, tierLearnedDecision, ServingModel } from '@apportion/sdk/engine';
import type { FeatureEncoder } from '../../src/learner/features.js';
import { TIER_CANDIDATE_SHARE } from '../../src/learner/policy.js';
import type { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { curvesOf, drawIndex, gapProbs, plannedCostOf, predictQuality, pushTierAction, tierCandidates, tierGreedy, type TierAction, type TierAgent } from '../../src/learner/tiers-policy.js';

/**
 * The tier learner's served decision written out by hand, for tests that check the engine's decision draw for draw
 * against it (test/tiers/token-share.test.ts, test/tiers/explore-shrink.test.ts).
 */

type TierWorld = ReturnType<typeof loadTierWorld>;

/** A request: features, a token total and (mostly) a cost ceiling, and an anchor action that fits both. */
export interface TierRequest {
  readonly features: ReturnType<TierWorld['features']>;
  readonly T: number;
  readonly C: number;
  readonly anchor: TierAction;
}

export function tierRequestOf(tw: TierWorld, agents: readonly TierAgent[], rng: () => number): TierRequest {
  const features = tw.features(tw.sample(rng));
  const T = 3000 + Math.floor(rng() * 60_000);
  const budgets = agents.map((a) => a.min + Math.floor((T / agents.length - a.min) * rng()));
  const anchor = { assign: agents.map(() => 0), budgets };
  const C = rng() < 0.2 ? Infinity : plannedCostOf(agents, anchor) * (1 + rng());
  return { features, T, C, anchor };
}

/** The request as `tierLearnedDecision` takes it. */
export const tierInput = (r: TierRequest) => ({ features: r.features, totalTokens: r.T, ...(Number.isFinite(r.C) ? { maxCostUsd: r.C } : {}) }) as Parameters<typeof tierLearnedDecision>[3];

export interface ReferenceDecision {
  readonly candidates: TierAction[];
  readonly probs: number[];
  readonly chosen: number;
  readonly ck?: number;
  readonly cw?: boolean;
}

/**
 * The serving version's candidates with the anchor appended, gap-weighted (γ = gamma) at exploration rate epsilon,
 * one draw; the candidate version's greedy action mixed in at TIER_CANDIDATE_SHARE with a second draw.
 */
export function referenceTierDecision(
  m: ServingModel,
  encoder: FeatureEncoder,
  agents: readonly TierAgent[],
  explore: ExploreOptions,
  r: TierRequest,
  rng: () => number,
  epsilon: number,
  gamma: number,
): ReferenceDecision {
  const opts = { epsilon: 0, perturbation: explore.perturbation, costWeight: 0 };
  const x = encoder.encode(r.features);
  const candidates: TierAction[] = [];
  for (const c of tierCandidates(m.tiers!, agents, x, r.T, r.C, opts) ?? [r.anchor]) pushTierAction(candidates, c);
  pushTierAction(candidates, r.anchor);
  const curves = curvesOf(m.tiers!, agents, x);
  let probs = gapProbs(
    candidates.map((a) => predictQuality(curves, a)),
    epsilon,
    gamma,
  );
  let chosen = drawIndex(probs, rng());
  if (!m.candidate?.tiers) return { candidates, probs, chosen };
  const cg = tierGreedy(m.candidate.tiers, agents, x, r.T, r.C, opts);
  if (!cg) return { candidates, probs, chosen };
  const ck = pushTierAction(candidates, cg);
  probs = candidates.map((_, k) => (probs[k] ?? 0) * (1 - TIER_CANDIDATE_SHARE) + (k === ck ? TIER_CANDIDATE_SHARE : 0));
  const cw = rng() < TIER_CANDIDATE_SHARE;
  if (cw) chosen = ck;
  return { candidates, probs, chosen, ck, cw };
}
