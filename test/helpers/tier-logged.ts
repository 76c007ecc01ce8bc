import type { LoggedEvent } from '../../src/learner/events.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { loadTierWorld } from '../../src/learner/sim/tiers.js';

type TierWorld = ReturnType<typeof loadTierWorld>;

/** Who served a logged tier decision: its model assignment, and the learner's version and guard arm when set. */
export interface TierPick {
  readonly assign: readonly number[];
  readonly m?: number;
  readonly a?: 0 | 1;
}

/**
 * Logged decisions of a tier world, as the training buffer holds them: each request sampled from the world, a model
 * assignment (`pick`; default one drawn uniformly), a random split of `total` (default the world's) within the agents'
 * bounds, and the world's noisy outcome. Deterministic in `seed`; ids `${prefix}${seed}-${t}`.
 */
export function tierDecisions(
  tw: TierWorld,
  n: number,
  seed: number,
  opts: { readonly prefix?: string; readonly t0?: number; readonly total?: number; readonly pick?: (rng: () => number) => TierPick } = {},
): LoggedEvent[] {
  const rng = mulberry32(seed);
  const total = opts.total ?? tw.totalTokens;
  const pick = opts.pick ?? ((r: () => number): TierPick => ({ assign: tw.assignments[Math.floor(r() * tw.assignments.length)]! }));
  return Array.from({ length: n }, (_, t) => {
    const c = tw.sample(rng);
    const { assign, m, a } = pick(rng);
    const shares = tw.agents.map(() => 0.2 + rng());
    const sum = shares.reduce((s, v) => s + v, 0);
    const budgets = tw.agents.map((ag, i) => Math.min(ag.maxTokens, ag.minTokens + Math.floor((shares[i]! / sum) * total)));
    const o = tw.outcome(c, [...assign], budgets, rng);
    return {
      id: `${opts.prefix ?? 'd'}${seed}-${t}`,
      t: (opts.t0 ?? 0) + t,
      s: 'l',
      f: tw.features(c),
      T: tw.totalTokens,
      b: Object.fromEntries(tw.agents.map((ag, i) => [ag.name, budgets[i]!])),
      q: o.quality,
      c: null,
      M: assign.map((k) => tw.models[k]!),
      ...(m !== undefined ? { m } : {}),
      ...(a !== undefined ? { a } : {}),
    };
  });
}
