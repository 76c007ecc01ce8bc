/**
 * The activation gate under a large cost weight. Reward = quality − λ·cost with λ = 1,000 and a cost of ~$0.04–0.24
 * a request: rewards near −40 … −240, far outside what the token reward model (a product of saturating curves, in
 * (0, e]) can predict. Every compared split uses the whole total, so λ·cost is the same for all of them and cancels
 * in the true difference; the gate's paired Δ must not be swamped by it (before: Δ of ±20–50 with bounds near −100,
 * so no version could ever pass). Pure (the gate does no I/O).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures } from '../../src/learner/features.js';
import { gateVerdict } from '../../src/learner/gate.js';
import { initialWeights } from '../../src/learner/model.js';
import { CANDIDATE_SHARE, decideAround, uniformSplit, withCandidate } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';

const names = ['a', 'b', 'c'];
const agents = names.map(() => ({ min: 100, cap: Infinity }));
const LAMBDA = 1000;
const explore = { explorer: 'epsilon' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5 };
/** A split of T in the given proportions (integers, summing to T). */
const byShares = (shares: readonly number[], T: number) => {
  const s = shares.reduce((x, y) => x + y, 0);
  const b = shares.map((v) => Math.floor((v / s) * T));
  b[b.length - 1]! += T - b.reduce((x, y) => x + y, 0);
  return b;
};
const DEFAULT = [2, 3, 1];
/** Quality grows with agent a's share: 0.5 + 0.45·b_a/T. The candidate (a at 40 % instead of 33.3 %) is better by 0.03. */
const quality = (b: readonly number[], T: number) => 0.5 + 0.45 * (b[0]! / T);

function log(n: number, seed: number, candidate: readonly number[]): LoggedEvent[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, (_, t) => {
    const T = Math.round(4000 + 20000 * rng());
    const dflt = byShares(DEFAULT, T);
    let dec = decideAround(dflt, agents, T, explore, rng, uniformSplit(agents, T));
    dec = withCandidate(dec, byShares(candidate, T), CANDIDATE_SHARE, rng);
    const q = Math.min(1, Math.max(0, quality(dec.budgets, T) + (rng() - 0.5) * 0.2));
    const c = dec.budgets.reduce((x, y) => x + y, 0) * 1e-5;
    return { id: `${seed}-${t}`, t, s: 'learn', f: {}, T, b: Object.fromEntries(names.map((a, i) => [a, dec.budgets[i]!])), q, c, C: dec.candidates, P: dec.probs, k: dec.chosen };
  });
}

function verdict(candidate: readonly number[], seed: number) {
  const encoder = compileFeatures([]);
  const model = { weights: initialWeights(encoder.dim, names.length, 12000, mulberry32(1)), encoder };
  const events = log(1000, seed, candidate);
  const v = gateVerdict({ events, agents: names, costWeight: LAMBDA, candidate: model, candidateSplit: (e) => byShares(candidate, e.T), defaultSplit: (e) => byShares(DEFAULT, e.T) });
  return { v, d: v.comparisons.find((c) => c.against === 'default') };
}

describe('activation gate with a large cost weight', () => {
  it('estimates the paired difference near its true value and passes a better version', () => {
    // a at 40 %: quality 0.5 + 0.45·0.4 = 0.68 against 0.65 for the default (a at 1/3): +0.03.
    for (const seed of [1, 2, 3]) {
      const { v, d } = verdict([2.4, 2.8, 0.8], seed);
      assert.ok(d, v.reason);
      assert.ok(Math.abs(d.diff - 0.03) < 0.03, `seed ${seed}: Δ ${d.diff.toFixed(4)} against the true +0.03 (${v.reason})`);
      assert.equal(v.pass, true, `seed ${seed}: ${v.reason}`);
    }
  });

  it('refuses a version worse by more than δ, with Δ near its true value', () => {
    // a at 1/6: quality 0.575, worse by 0.075.
    for (const seed of [4, 5]) {
      const { v, d } = verdict([1, 3.5, 1.5], seed);
      assert.ok(d, v.reason);
      assert.ok(Math.abs(d.diff + 0.075) < 0.03, `seed ${seed}: Δ ${d.diff.toFixed(4)} against the true −0.075 (${v.reason})`);
      assert.equal(v.pass, false, `seed ${seed}: ${v.reason}`);
    }
  });
});
