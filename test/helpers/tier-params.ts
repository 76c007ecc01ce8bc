import { initialParams, type TierAgent, type TierParams } from '../../src/learner/tiers-policy.js';

/**
 * Random tier parameters for property tests: weights and needs per agent and feature, and a cheaper model's reach
 * and pace, on top of the prior whose need scale is drawn from [scaleFrom, scaleFrom + scaleSpan).
 */
export function randomTierParams(agents: readonly TierAgent[], dim: number, scaleFrom: number, scaleSpan: number, rng: () => number): TierParams {
  const p = initialParams(agents, dim, scaleFrom + rng() * scaleSpan);
  agents.forEach((_, i) => {
    for (let j = 0; j < dim; j++) {
      p.u[i]![j] = 2 * rng() - 1;
      p.theta[i]![j]! += 0.5 * (2 * rng() - 1);
    }
    p.eta[i]![1] = 4 * rng() - 2;
    p.kappa[i]![1] = 2 * rng() - 1;
  });
  return p;
}
