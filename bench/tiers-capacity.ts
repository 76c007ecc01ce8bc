/**
 * What a perfect log allows the tier learner: per generated tier world, the tier model (tiers-policy.ts) fitted by
 * the service's tier retrain (train-tiers.ts: from the prior, then warm refits kept only when they explain the log
 * significantly better) on logs generated from the world's truth, and its greedy joint action ÷ the tier oracle (true
 * expected reward on held-out requests), beside uniform-on-the-first-model and the best static choice:
 *
 * - random: every decision a model assignment drawn uniformly and a split drawn uniformly over the simplex (Dirichlet(1)
 *   shares fitted to the bounds), scaled down to the cost ceiling where it is over;
 * - ideal: half such random decisions, half the oracle's own action with every agent's tokens scaled by e^u, u uniform
 *   in [−0.5, 0.5] (what a learner that explored perfectly around the optimum would have logged);
 * - near: the oracle's neighbourhood only.
 *
 *   node --import tsx bench/tiers-capacity.ts [--family dev|wide|test] [--seeds 1,2] [--rows 4000] [--refits 2] [--contexts 150]
 *
 * Choose by the dev (or wide) seeds only (docs/tiers.md); the test list is a diagnostic of the ceiling. As for
 * bench/learner-capacity.ts (docs/learner.md, "What a perfect log allows").
 */
import { readFileSync } from 'node:fs';
import { tierAgentsOf, tierNeedGuess } from '@apportion/sdk/engine';
import type { LoggedEvent } from '../src/learner/events.js';
import { compileFeatures, type FeatureScaling } from '../src/learner/features.js';
import { initialWeights, serializeWeights } from '../src/learner/model.js';
import { mulberry32 } from '../src/learner/rng.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { bestStaticTier, servedStatic, type TierWorld } from '../src/learner/sim/tiers.js';
import { worldFeatures, type SimContext } from '../src/learner/sim/world.js';
import { deserializeTierParams, tierGreedy, type SerializedTierParams } from '../src/learner/tiers-policy.js';
import { trainTiers } from '../src/learner/train-tiers.js';
import { waterFill } from '../src/strategies/fit.js';
import { flag, rankQuantile as q } from './lib.js';

const which = flag('family', 'dev');
const seedLists = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
const seeds = flag('seeds', '') !== '' ? flag('seeds', '').split(',').map(Number) : seedLists[which]!;
const rows = Number(flag('rows', '4000'));
const refits = Number(flag('refits', '2'));
const nCtx = Number(flag('contexts', '150'));
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

/** A decision's budgets scaled toward the agents' minimums until its planned cost is within the ceiling (bisection). */
function withinCeiling(tw: TierWorld, assign: readonly number[], b: number[]): number[] {
  if (tw.plannedCost(assign, b) <= tw.maxCostUsd) return b;
  const mins = tw.agents.map((a) => a.minTokens);
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < 40; k++) {
    const mid = (lo + hi) / 2;
    const c = b.map((v, i) => Math.floor(mins[i]! + (v - mins[i]!) * mid));
    if (tw.plannedCost(assign, c) <= tw.maxCostUsd) lo = mid;
    else hi = mid;
  }
  return b.map((v, i) => Math.floor(mins[i]! + (v - mins[i]!) * lo));
}

function logOf(tw: TierWorld, seed: number, salt: number, near: (t: number) => boolean): LoggedEvent[] {
  const rng = mulberry32(seed ^ salt);
  const T = tw.totalTokens;
  const bounds = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity }));
  const out: LoggedEvent[] = [];
  for (let t = 0; t < rows; t++) {
    const c = tw.sample(rng);
    let assign: number[];
    let weights: number[];
    if (near(t)) {
      const o = tw.oracle(c, T, tw.maxCostUsd);
      assign = o.assign;
      weights = o.budgets.map((b) => Math.max(b, 1) * Math.exp(rng() - 0.5));
    } else {
      assign = tw.assignments[Math.floor(rng() * tw.assignments.length)]!.slice();
      weights = tw.agents.map(() => -Math.log(Math.max(rng(), 1e-12)));
    }
    const b = withinCeiling(tw, assign, waterFill(bounds.map((x, i) => ({ ...x, weight: weights[i]! })), T).map(Math.floor));
    const res = tw.outcome(c, assign, b, rng);
    const bb: Record<string, number> = {};
    tw.agents.forEach((a, i) => (bb[a.name] = b[i]!));
    out.push({ id: String(t), t, s: 'learned', f: tw.features(c), T, X: tw.maxCostUsd, b: bb, M: assign.map((m) => tw.models[m]!), q: res.quality, c: res.cost });
  }
  // The retrain reads its window newest first.
  return out.reverse();
}

function fit(tw: TierWorld, events: readonly LoggedEvent[]): { tiers: SerializedTierParams; scaling?: FeatureScaling } | undefined {
  const decl = worldFeatures(tw.world);
  const names = tw.agents.map((a) => a.name);
  const prior = serializeWeights(initialWeights(compileFeatures(decl.features).dim, names.length, tw.pipeline.defaultTotalTokens, mulberry32(1)));
  const t = { agents: tierAgentsOf(tw.pipeline), models: tw.pipeline.agents.map((a) => (a.models ?? []).map((m) => m.model)), needGuess: tierNeedGuess(tw.pipeline) };
  let tiers: SerializedTierParams | undefined;
  let scaling: FeatureScaling | undefined;
  for (let k = 0; k <= refits; k++) {
    const job = trainTiers({ features: decl.features, agents: names, init: prior, ...(scaling ? { initScaling: scaling } : {}), seed: k + 1, costWeight: tw.costWeight }, { ...t, ...(tiers ? { init: tiers } : {}) }, events, events.length);
    if (!job.trained || !job.tiers) continue;
    tiers = job.tiers;
    scaling = job.scaling;
  }
  return tiers ? { tiers, ...(scaling ? { scaling } : {}) } : undefined;
}

console.log(`bench/tiers-capacity --family ${which}: ${seeds.length} worlds; ${rows} logged decisions; ${refits} warm refits; ${nCtx} held-out requests; greedy ÷ tier oracle (true expected reward)`);
const table: { stat: number; uni: number; random: number; ideal: number; near: number }[] = [];
for (const seed of seeds) {
  const fw = generateTierWorld(seed);
  const tw = fw.world;
  const T = tw.totalTokens;
  const C = tw.maxCostUsd;
  const lam = tw.costWeight;
  const erng = mulberry32(seed ^ 0x5eed);
  const ctx: SimContext[] = Array.from({ length: nCtx }, () => tw.sample(erng));
  const oracle = mean(ctx.map((c) => tw.oracle(c, T, C).reward));
  const st = bestStaticTier(tw, ctx.slice(0, 30), T, C);
  const stat = mean(ctx.map((c) => tw.reward(c, st.assign, servedStatic(tw, st.assign, st.shares, T, C)))) / oracle;
  const first = tw.agents.map(() => 0);
  const uni = mean(ctx.map((c) => tw.reward(c, first, servedStatic(tw, first, tw.agents.map(() => 1 / tw.agents.length), T, C)))) / oracle;
  const value = (v: ReturnType<typeof fit>) => {
    if (!v) return NaN;
    const encoder = compileFeatures(worldFeatures(tw.world).features, v.scaling);
    const agents = tierAgentsOf(tw.pipeline);
    const params = deserializeTierParams(v.tiers, agents, encoder.dim);
    return mean(ctx.map((c) => {
      const g = tierGreedy(params, agents, encoder.encode(tw.features(c)), T, C, { epsilon: 0, perturbation: 0.5, costWeight: lam });
      return g ? tw.reward(c, g.assign, g.budgets) : 0;
    })) / oracle;
  };
  const random = value(fit(tw, logOf(tw, seed, 0xb40ad, () => false)));
  const ideal = value(fit(tw, logOf(tw, seed, 0x1dea1, (t) => t % 2 === 1)));
  const near = value(fit(tw, logOf(tw, seed, 0x2dea1, () => true)));
  table.push({ stat, uni, random, ideal, near });
  console.log(`seed ${String(seed).padEnd(7)} ${tw.agents.length} agents, ${tw.models.length} models${lam > 0 ? `, λ ${lam.toFixed(2)}` : ''}: uniform ${uni.toFixed(3)}  best static ${stat.toFixed(3)}  | random ${random.toFixed(3)}  ideal ${ideal.toFixed(3)}  near ${near.toFixed(3)}`);
}
console.log(`summary over ${table.length} worlds: median / p10 / min`);
for (const k of ['uni', 'stat', 'random', 'ideal', 'near'] as const) {
  const xs = table.map((r) => r[k]);
  console.log(`  ${k.padEnd(7)} ${q(xs, 0.5).toFixed(3)} / ${q(xs, 0.1).toFixed(3)} / ${q(xs, 0).toFixed(3)}`);
}
console.log(`  ideal below 0.95 on ${table.filter((r) => r.ideal < 0.95).length} of ${table.length}; ideal above the best static choice on ${table.filter((r) => r.ideal > r.stat).length}`);
