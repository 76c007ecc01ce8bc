import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyTiers, blendedRate, compileStatic, toPipeline, type Pipeline } from '@apportion/sdk/engine';
import { catalogPrice } from '../../pipelines/tiers.js';
import type { Features } from '../../strategies/types.js';
import { normal } from '../rng.js';
import { assignments, bestSplit, floorSplit, response, type Curve } from '../tiers-split.js';
import { contextFeatures, polishShares, sampleContext, truthOf, type SimContext, type World } from './world.js';

/**
 * Simulated worlds with model tiers (pure but for reading the world file): the needs and weights of a named world
 * (world.ts), and for every agent a response per candidate model. On its first model an agent answers as in the
 * named world, c(b) = 1 − w·exp(−b/need); on another model m it answers
 *
 *   c_m(b) = 1 − w·[(1 − reach_m) + reach_m·exp(−b / (pace_m·need))]
 *
 * (reach: the share of the agent's weight the model can recover however many tokens it gets; pace: how many times
 * the tokens it needs): a stronger model saturates faster and higher. Prices are the price table's
 * (@pydantic/genai-prices, blended at the engine's output share), so a split's planned cost is exactly what the
 * engine charges against a ceiling. The oracle is known: per request, the best model per agent (by enumeration)
 * and its best split under the total and the ceiling (tiers-split.ts, exact KKT).
 */
export interface TierWorldDoc {
  readonly name: string;
  readonly description: string;
  readonly maxCostUsd: number;
  readonly world: World;
  readonly models: readonly string[];
  readonly response: Readonly<Record<string, Readonly<Record<string, { readonly reach: number; readonly pace: number }>>>>;
  /** λ of reward = quality − λ·cost (USD); default 0 (the named worlds). */
  readonly costWeight?: number;
}

export const TIER_WORLDS_DIR = fileURLToPath(new URL('../../../experiments/tiers/', import.meta.url));
export const TIER_WORLD_NAMES = ['cheap-suffices', 'strong-needed'] as const;

export interface TierWorld {
  readonly name: string;
  readonly doc: TierWorldDoc;
  readonly world: World;
  readonly agents: World['agents'];
  readonly models: readonly string[];
  /** USD per token of each model (price table, blended). */
  readonly rates: readonly number[];
  readonly maxCostUsd: number;
  readonly totalTokens: number;
  /** λ of reward = quality − λ·planned cost (0: quality alone). */
  readonly costWeight: number;
  /** The pipeline the world runs on: every agent declares every model (prices resolved). */
  readonly pipeline: Pipeline;
  /** Every model assignment (model index per agent), all-first-model first. */
  readonly assignments: readonly number[][];
  sample(rng: () => number): SimContext;
  features(c: SimContext): Features;
  /** Agent i's response curve on model m for a request. */
  curves(c: SimContext): Curve[][];
  quality(c: SimContext, assign: readonly number[], budgets: readonly number[]): number;
  /** Expected reward: quality − λ·planned cost. */
  reward(c: SimContext, assign: readonly number[], budgets: readonly number[]): number;
  /** Planned cost: every budget priced in full at its model's rate (what the engine holds against a ceiling). */
  plannedCost(assign: readonly number[], budgets: readonly number[]): number;
  /** One noisy outcome: quality, and the cost of the tokens used (an agent uses up to 1.3 × its need on its model). */
  outcome(c: SimContext, assign: readonly number[], budgets: readonly number[], rng: () => number): { quality: number; cost: number };
  /**
   * The best (models, integer budgets) for a request under the total and the ceiling, by expected reward (`quality`
   * is its expected quality, `reward` its reward). With λ = 0 it is exact; with λ > 0 spending less than the ceiling
   * may pay, and every assignment's best split is also tried at 0.8, 0.64, … 0.1× the ceiling (a numerical optimum).
   */
  oracle(c: SimContext, total: number, ceiling: number): { assign: number[]; budgets: number[]; quality: number; reward: number };
}

export function loadTierWorld(nameOrPath: string): TierWorld {
  const file = nameOrPath.endsWith('.json') ? nameOrPath : `${TIER_WORLDS_DIR}${nameOrPath}.json`;
  return tierWorld(JSON.parse(readFileSync(file, 'utf8')) as TierWorldDoc);
}

export function tierWorld(doc: TierWorldDoc, at = Date.UTC(2026, 0, 1)): TierWorld {
  const w = doc.world;
  const prices = doc.models.map((m) => {
    const p = catalogPrice(m, undefined, at);
    if (!p) throw new Error(`tier world ${doc.name}: model ${m} is not in the price table`);
    return p;
  });
  const rates = prices.map(blendedRate);
  const pipeline = toPipeline({
    id: doc.name,
    version: 1,
    doc: {
      defaultTotalTokens: w.totalTokens,
      agents: w.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens, models: doc.models.map((model, k) => ({ model, price: prices[k]! })) })),
    },
  });
  const mins = w.agents.map((a) => a.minTokens);
  const caps = w.agents.map((a) => a.maxTokens);
  const all = assignments(w.agents.map(() => doc.models.length));
  const curves = (c: SimContext): Curve[][] => {
    const { need, weight } = truthOf(w, 0, c);
    return w.agents.map((a, i) =>
      doc.models.map((m, k) => {
        const r = k === 0 ? { reach: 1, pace: 1 } : (doc.response[a.name]?.[m] ?? { reach: 1, pace: 1 });
        return { A: weight[i]! * (1 - r.reach), B: weight[i]! * r.reach, N: need[i]! * r.pace };
      }),
    );
  };
  const quality = (c: SimContext, assign: readonly number[], budgets: readonly number[]) => {
    const cv = curves(c);
    let q = 1;
    for (let i = 0; i < budgets.length; i++) q *= response(cv[i]![assign[i]!]!, budgets[i]!);
    return q;
  };
  const plannedCost = (assign: readonly number[], budgets: readonly number[]) => {
    let s = 0;
    for (let i = 0; i < budgets.length; i++) s += budgets[i]! * rates[assign[i]!]!;
    return s;
  };
  const costWeight = doc.costWeight ?? 0;
  const reward = (c: SimContext, assign: readonly number[], budgets: readonly number[]) => quality(c, assign, budgets) - costWeight * plannedCost(assign, budgets);
  const fractions = costWeight > 0 ? [1, 0.8, 0.64, 0.5, 0.4, 0.3, 0.2, 0.1] : [1];
  return {
    name: doc.name,
    doc,
    world: w,
    agents: w.agents,
    models: doc.models,
    rates,
    maxCostUsd: doc.maxCostUsd,
    totalTokens: w.totalTokens,
    costWeight,
    pipeline,
    assignments: all,
    sample: (rng) => sampleContext(w, rng),
    features: (c) => contextFeatures(c),
    curves,
    quality,
    reward,
    plannedCost,
    outcome(c, assign, budgets, rng) {
      const cv = curves(c);
      let cost = 0;
      for (let i = 0; i < budgets.length; i++) cost += Math.min(budgets[i]!, Math.round(1.3 * cv[i]![assign[i]!]!.N)) * rates[assign[i]!]!;
      return { quality: Math.min(1, Math.max(0, quality(c, assign, budgets) + w.noise * normal(rng))), cost };
    },
    oracle(c, total, ceiling) {
      const cv = curves(c);
      let best = { assign: all[0]!, budgets: mins.slice(), quality: -Infinity, reward: -Infinity };
      for (const a of all) {
        for (const f of fractions) {
          const split = bestSplit(cv.map((row, i) => row[a[i]!]!), a.map((k) => rates[k]!), mins, caps, total, ceiling * f);
          if (!split) break;
          const b = floorSplit(split, mins);
          const q = quality(c, a, b);
          const r = q - costWeight * plannedCost(a, b);
          if (r > best.reward) best = { assign: a, budgets: b, quality: q, reward: r };
        }
      }
      return best;
    },
  };
}

/**
 * What the engine serves for a static strategy with `shares` and every agent on the models of `assign`, under the
 * total and the ceiling: the static split, then the tier stage (tiers.ts: one factor above the minimums).
 */
export function servedStatic(tw: TierWorld, assign: readonly number[], shares: readonly number[], total: number, ceiling: number): number[] {
  const p = tw.pipeline;
  const out = compileStatic({ shares: Object.fromEntries(p.agents.map((a, i) => [a.name, shares[i]!])) }, p).allocate({ features: {}, totalTokens: total });
  const models = Object.fromEntries(p.agents.map((a, i) => [a.name, tw.models[assign[i]!]!]));
  const t = applyTiers(p, { ...out, models }, { ...out.budgets }, total, ceiling);
  return p.agents.map((a) => t.budgets[a.name]!);
}

/**
 * The best static choice with one model per agent: for every model assignment the static shares maximising mean
 * expected reward (quality − λ·planned cost; quality alone when λ = 0) over `contexts` as the engine would serve them (servedStatic), the best assignment kept; with `polishTop` only that many assignments, the best at their starting shares, are polished.
 */
export function bestStaticTier(tw: TierWorld, contexts: readonly SimContext[], total: number, ceiling: number, opts: { readonly polishTop?: number } = {}): { assign: number[]; shares: number[]; value: number } {
  const starts = tw.assignments.map((a) => {
    const value = (s: readonly number[]) => {
      if (!s.some((v) => v > 0)) return -Infinity;
      const b = servedStatic(tw, a, s, total, ceiling);
      let v = 0;
      for (const c of contexts) v += tw.reward(c, a, b);
      return v / contexts.length;
    };
    // Started from the oracle's mean shares on this assignment.
    const start = tw.agents.map(() => 0);
    for (const c of contexts) {
      const cv = tw.curves(c);
      const split = bestSplit(cv.map((row, i) => row[a[i]!]!), a.map((k) => tw.rates[k]!), tw.agents.map((x) => x.minTokens), tw.agents.map((x) => x.maxTokens), total, ceiling);
      if (!split) continue;
      const sum = split.reduce((s, v) => s + v, 0);
      split.forEach((v, i) => (start[i]! += v / sum / contexts.length));
    }
    return { a, value, start, v0: value(start) };
  });
  // Only the `polishTop` assignments best at their starting shares are polished (all by default).
  const order = starts.map((_, k) => k).sort((x, y) => starts[y]!.v0 - starts[x]!.v0).slice(0, opts.polishTop ?? starts.length);
  let best = { assign: tw.assignments[0]!.slice(), shares: tw.agents.map(() => 1), value: -Infinity };
  for (const k of order) {
    const { a, value, start } = starts[k]!;
    const shares = polishShares(start, value);
    const v = value(shares);
    if (v > best.value) best = { assign: a.slice(), shares, value: v };
  }
  return best;
}
