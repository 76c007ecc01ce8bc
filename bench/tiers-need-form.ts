/**
 * Whether the tier reward model's form of the need, N_i(x) = exp(θ_i·φ) (log-linear in the encoded request
 * features), can follow what a generated tier world's agents need (base + per message + per document token, times a
 * task multiplier: additive, not log-linear). Per world and agent: the least-squares θ of log N_true on φ over
 * sampled requests (φ encoded with the scaling fitted on them, as a retrain does) and its R²; then, on a sixth of the
 * requests, the oracle's models with the true curves but those best log-linear needs, split by the same KKT split the
 * policy uses (bestSplit), against the oracle's split: the token-split loss the form alone costs, as a fraction of
 * the oracle's reward. `bench/tiers-gap.ts` measures the loss the learned fit has on the same worlds.
 *
 *   node --import tsx bench/tiers-need-form.ts [--family dev|test] [--seeds a,b] [--requests 3000]
 */
import { readFileSync } from 'node:fs';
import { compileFeatures, fitScaling } from '../src/learner/features.js';
import { mulberry32 } from '../src/learner/rng.js';
import { ridgeFactor, solveWith } from '../src/learner/usage.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { worldFeatures } from '../src/learner/sim/world.js';
import { bestSplit } from '../src/learner/tiers-split.js';
import { flag } from './lib.js';

const which = flag('family', 'dev');
const lists = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
const seeds = flag('seeds', '') !== '' ? flag('seeds', '').split(',').map(Number) : lists[which];
const nReq = Number(flag('requests', '3000'));
if (!seeds || seeds.some((s) => !Number.isInteger(s)) || !(Number.isInteger(nReq) && nReq >= 100)) {
  console.error('usage: node --import tsx bench/tiers-need-form.ts [--family dev|test] [--seeds a,b] [--requests N ≥ 100]');
  process.exit(2);
}

console.log(`bench/tiers-need-form: ${seeds.length} generated tier worlds (${flag('seeds', '') || which}), ${nReq} sampled requests each`);
const losses: number[] = [];
for (const seed of seeds) {
  const tw = generateTierWorld(seed).world;
  const rng = mulberry32(7);
  const ctx = Array.from({ length: nReq }, () => tw.sample(rng));
  const specs = worldFeatures(tw.world).features;
  const enc = compileFeatures(specs, fitScaling(specs, ctx.map((c) => tw.features(c))));
  const X = ctx.map((c) => Array.from(enc.encode(tw.features(c))));
  const curves = ctx.map((c) => tw.curves(c));
  const n = tw.agents.length;
  // Least squares of log N_true on φ (φ_0 = 1, the intercept), a ridge of 1e-6 for the collinear one-hot columns.
  const d = X[0]!.length;
  const Z = Float64Array.from(X.flat());
  const wt = new Float64Array(nReq).fill(1);
  const L = ridgeFactor(Z, wt, d, nReq, 1e-6);
  const fits = Array.from({ length: n }, (_, i) => {
    const y = curves.map((cv) => Math.log(cv[i]![0]!.N));
    const theta = solveWith(L, d, Z, wt, Float64Array.from(y), nReq);
    const pred = X.map((x) => x.reduce((s, v, j) => s + v * theta[j]!, 0));
    const my = y.reduce((s, v) => s + v, 0) / y.length;
    const ssr = y.reduce((s, v, k) => s + (v - pred[k]!) ** 2, 0);
    const sst = y.reduce((s, v) => s + (v - my) ** 2, 0);
    return { pred, r2: sst > 1e-9 * y.length ? 1 - ssr / sst : 1, sd: Math.sqrt(sst / y.length), resid: Math.sqrt(ssr / y.length) };
  });
  const T = tw.totalTokens;
  const C = tw.maxCostUsd;
  let loss = 0;
  let oracle = 0;
  for (let k = 0; k < ctx.length; k += 6) {
    const o = tw.oracle(ctx[k]!, T, C);
    // The true curves on the oracle's models, each need replaced by the log-linear one (the model's pace kept).
    const formed = curves[k]!.map((row, i) => {
      const t = row[o.assign[i]!]!;
      return { A: t.A, B: t.B, N: (t.N / row[0]!.N) * Math.exp(fits[i]!.pred[k]!) };
    });
    const b = bestSplit(formed, o.assign.map((m) => tw.rates[m]!), tw.agents.map((a) => a.minTokens), tw.agents.map((a) => a.maxTokens), T, C);
    if (!b) continue;
    loss += o.reward - tw.reward(ctx[k]!, o.assign, b);
    oracle += o.reward;
  }
  losses.push(loss / oracle);
  console.log(
    `seed ${seed} (${n} agents): log N_true on φ, R² per agent ${fits.map((f) => `${f.r2.toFixed(3)} (sd ${f.sd.toFixed(2)}, residual sd ${f.resid.toFixed(2)})`).join('; ')}; ` +
      `token-split loss of the best log-linear needs (true weights, reach and pace; the oracle's models) ${(loss / oracle).toFixed(4)} of the oracle`,
  );
}
console.log(`token-split loss of the need's form: mean ${(losses.reduce((s, v) => s + v, 0) / losses.length).toFixed(4)}, max ${Math.max(...losses).toFixed(4)} of the oracle over ${losses.length} worlds`);
