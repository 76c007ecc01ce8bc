/**
 * How much a token split that trades quality against λ·cost could be worth on the cost-weighted tier worlds, by the
 * worlds' truth (no learning: every split here is computed on the true curves):
 *
 *   node --import tsx bench/tiers-cost-split.ts [--family dev,test] [--contexts 300] [--extra-dev 9-40]
 *
 * For each generated tier world with λ > 0 (experiments/tiers/family-seeds.json; `--extra-dev a-b` adds the
 * generated seeds a…b that have λ > 0, for choosing), on `--contexts` sampled requests at the world's total and
 * ceiling, the mean expected reward (quality − λ·planned cost) ÷ the tier oracle's (which tries the ceiling and
 * 0.8, 0.64, … 0.1× of it on every model assignment) of:
 *
 * - quality split: what the tier learner's greedy action is with perfect curves today (tiers-policy.ts): every
 *   assignment's quality-maximising split under the total and the ceiling, the assignment picked by reward;
 * - reward split: the same with each assignment's split from `bestRewardSplit` (below: the KKT fixed point
 *   that prices cost at λ / quality).
 *
 * The gap between the two is the most a cost-trading split can add to the learner (its fitted curves are not the
 * truth). The baseline (the quality split) is measured in the same run on the same requests.
 */
import { readFileSync } from 'node:fs';
import { mulberry32 } from '../src/learner/rng.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { bestSplit, floorSplit, response, type Curve } from '../src/learner/tiers-split.js';
import { flag } from './lib.js';

const seeds = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
const lists = flag('family', 'dev,test').split(',');
const nCtx = Number(flag('contexts', '300'));
const extra = flag('extra-dev', '');

/**
 * The split maximising reward = Π c_i(b_i) − λ·Σ r_i·b_i (quality less the cost weight times the planned cost) under
 * the same constraints: by KKT the product's optimum with the cost priced at ν ≥ λ / Q, Q the product at the optimum,
 * so `iterations` fixed-point steps ν ← λ / Q(split) from the quality-only split (λ = 0: bestSplit). The best of the
 * quality-only split and each step's split (by reward) is returned.
 */
function bestRewardSplit(curves: readonly Curve[], rates: readonly number[], mins: readonly number[], caps: readonly number[], total: number, ceiling: number, lambda: number, iterations = 4): number[] | undefined {
  const first = bestSplit(curves, rates, mins, caps, total, ceiling);
  if (!first || !(lambda > 0)) return first;
  const rewardOf = (b: readonly number[]) => {
    let q = 1;
    let cost = 0;
    for (let i = 0; i < b.length; i++) {
      q *= response(curves[i]!, b[i]!);
      cost += b[i]! * rates[i]!;
    }
    return { q, r: q - lambda * cost };
  };
  let best = first;
  let bestR = rewardOf(first);
  let cur = bestR;
  for (let it = 0; it < iterations && cur.q > 0; it++) {
    const next = bestSplit(curves, rates, mins, caps, total, ceiling, lambda / cur.q);
    if (!next) break;
    cur = rewardOf(next);
    if (cur.r > bestR.r) {
      best = next;
      bestR = cur;
    }
  }
  return best;
}

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

const todo: { list: string; seed: number }[] = [];
for (const l of lists) for (const s of seeds[l] ?? []) todo.push({ list: l, seed: s });
if (extra) {
  const [a, b] = extra.split('-').map(Number) as [number, number];
  for (let s = a; s <= b; s++) todo.push({ list: 'extra-dev', seed: s });
}

console.log(`bench/tiers-cost-split: ${nCtx} requests per cost-weighted world; reward ÷ tier oracle by the truth`);
const rows: { list: string; seed: number; q: number; r: number }[] = [];
for (const { list, seed } of todo) {
  const fw = generateTierWorld(seed);
  const tw = fw.world;
  if (!(tw.costWeight > 0)) continue;
  const T = tw.totalTokens;
  const C = tw.maxCostUsd;
  const mins = tw.agents.map((a) => a.minTokens);
  const caps = tw.agents.map((a) => a.maxTokens);
  const rng = mulberry32(seed);
  const oracle: number[] = [];
  const qs: number[] = [];
  const rs: number[] = [];
  for (let k = 0; k < nCtx; k++) {
    const c = tw.sample(rng);
    const cv = tw.curves(c);
    oracle.push(tw.oracle(c, T, C).reward);
    let bq = -Infinity;
    let br = -Infinity;
    for (const a of tw.assignments) {
      const curves = cv.map((row, i) => row[a[i]!]!);
      const rates = a.map((m) => tw.rates[m]!);
      const sq = bestSplit(curves, rates, mins, caps, T, C);
      if (!sq) continue;
      bq = Math.max(bq, tw.reward(c, a, floorSplit(sq, mins)));
      const sr = bestRewardSplit(curves, rates, mins, caps, T, C, tw.costWeight);
      if (sr) br = Math.max(br, tw.reward(c, a, floorSplit(sr, mins)));
    }
    qs.push(bq);
    rs.push(br);
  }
  const row = { list, seed, q: mean(qs) / mean(oracle), r: mean(rs) / mean(oracle) };
  rows.push(row);
  console.log(`${list} seed ${seed}: ${fw.doc.description}; λ ${tw.costWeight}: quality split ${row.q.toFixed(4)}, reward split ${row.r.toFixed(4)} of the oracle (${(row.r - row.q >= 0 ? '+' : '') + (row.r - row.q).toFixed(4)})`);
}
for (const l of [...new Set(rows.map((r) => r.list))]) {
  const rr = rows.filter((r) => r.list === l);
  const d = rr.map((r) => r.r - r.q).sort((a, b) => a - b);
  console.log(`${l}: ${rr.length} cost-weighted worlds; quality split mean ${mean(rr.map((r) => r.q)).toFixed(4)}, reward split mean ${mean(rr.map((r) => r.r)).toFixed(4)}; difference median ${d[Math.floor((d.length - 1) / 2)]!.toFixed(4)}, min ${d[0]!.toFixed(4)}, max ${d[d.length - 1]!.toFixed(4)}`);
}
