import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures } from '../../src/learner/features.js';
import { expectedUsage, greedySplit, initialWeights, normalCdf, predict, response, type Heads } from '../../src/learner/model.js';
import { mulberry32, normal } from '../../src/learner/rng.js';
import { numericOracle } from '../../src/learner/sim/family.js';
import { canFitCost, fitCost, fitPrices } from '../../src/learner/usage.js';

/**
 * The cost model of bench/learner's `--cost-model` option (src/learner/usage.ts and the cost part of model.ts): the
 * usage fit is censored at the budget, prices are recovered from cost and usage, and the greedy split maximises
 * r̂ = Π c_i − Σ λ·price_i·E[min(b_i, D_i)].
 */
describe('cost model: usage, prices and the greedy split with a cost part', () => {
  it('Φ and E[min(b, D)] match their definitions', () => {
    assert.ok(Math.abs(normalCdf(0) - 0.5) < 1e-7);
    assert.ok(Math.abs(normalCdf(1.959964) - 0.975) < 1e-6);
    assert.ok(Math.abs(normalCdf(-3) - 0.0013499) < 1e-6);
    // Monte Carlo of E[min(b, D)] for ln D ~ N(7, 0.5²) at b = 1000.
    const rng = mulberry32(3);
    let s = 0;
    const N = 200_000;
    for (let k = 0; k < N; k++) s += Math.min(1000, Math.exp(7 + 0.5 * normal(rng)));
    assert.ok(Math.abs(expectedUsage(7, 0.5, 1000) / (s / N) - 1) < 0.005, `${expectedUsage(7, 0.5, 1000)} vs ${s / N}`);
    assert.equal(expectedUsage(7, 0.5, 0), 0);
  });

  // A toy pipeline: agent a's demand depends on the task (800 or 3000 tokens), agent b's is 400; budgets vary
  // around 1500 each, so a's usage is cut at its budget on the "long" task most of the time.
  const enc = compileFeatures([{ name: 'task', type: 'categorical', values: ['short', 'long'] }]);
  const agents = ['a', 'b'];
  const price = [5e-6, 1e-6];
  const events = (n: number, seed: number): LoggedEvent[] => {
    const rng = mulberry32(seed);
    return Array.from({ length: n }, (_, t) => {
      const task = rng() < 0.5 ? 'short' : 'long';
      const D = [(task === 'long' ? 3000 : 800) * Math.exp(0.1 * normal(rng)), 400 * Math.exp(0.1 * normal(rng))];
      const b = [Math.round(1500 * Math.exp(rng() - 0.5)), Math.round(1500 * Math.exp(rng() - 0.5))];
      const u = D.map((d, i) => Math.round(Math.min(d, b[i]!)));
      return { id: String(t), t, s: 'learned', f: { task }, T: 3000, b: { a: b[0]!, b: b[1]! }, q: 0.5, c: u[0]! * price[0]! + u[1]! * price[1]!, u: { a: u[0]!, b: u[1]! } };
    });
  };

  it('prices are recovered from cost and usage; a declared price is kept as declared', () => {
    const evs = events(400, 1);
    const p = fitPrices(evs, agents)!;
    assert.ok(Math.abs(p[0]! / price[0]! - 1) < 1e-3 && Math.abs(p[1]! / price[1]! - 1) < 1e-3, `fitted ${p}`);
    const q = fitPrices(evs, agents, [null, 2e-6])!;
    assert.equal(q[1], 2e-6);
    assert.ok(q[0]! > 0);
    // Without any reported cost nothing can be fitted, unless every price is declared.
    const noCost = evs.map((e) => ({ ...e, c: null }));
    assert.equal(fitPrices(noCost, agents), undefined);
    assert.deepEqual(fitPrices(noCost, agents, price), price);
    assert.equal(canFitCost(noCost, agents, { costWeight: 1 }), false);
    assert.equal(canFitCost(evs, agents, { costWeight: 0 }), false, 'no cost weight: no cost part');
    assert.equal(canFitCost(evs.map(({ u: _u, ...e }) => e), agents, { costWeight: 1, prices: price }), false, 'no usage reported: no cost part');
  });

  it('the demand fit treats usage at the budget as censored (D ≥ b) and predicts usage at budgets beyond those logged', () => {
    const evs = events(2000, 2);
    const quality = initialWeights(enc.dim, 2, 3000, mulberry32(1));
    const cw = fitCost(evs, enc, agents, quality, { costWeight: 1 })!;
    assert.ok(cw);
    const heads = (task: string): Heads => {
      const x = enc.encode({ task });
      const mu = Float64Array.from([0, 1], (i) => {
        let s = cw.m0[i]!;
        for (let j = 0; j < enc.dim; j++) s += cw.mx[i * enc.dim + j]! * x[j]!;
        const hid = Array.from({ length: quality.hidden }, (_, k) => {
          let h = quality.b1[k]!;
          for (let j = 0; j < enc.dim; j++) h += quality.w1[k * enc.dim + j]! * x[j]!;
          return Math.max(0, h);
        });
        hid.forEach((h, k) => (s += cw.mh[i * quality.hidden + k]! * h));
        return s;
      });
      return { need: Float64Array.of(1, 1), weight: Float64Array.of(0, 0), shape: Float64Array.of(2, 2), cost: { lp: cw.lp, mu, sigma: cw.sigma } };
    };
    const long = heads('long').cost!;
    // Agent a on the long task: demand 3000, almost always cut at its budget (≤ 2,473). Usage at a budget of 6,000 ≈ 3,000.
    const at6000 = expectedUsage(long.mu[0]!, long.sigma[0]!, 6000);
    assert.ok(Math.abs(at6000 / 3015 - 1) < 0.1, `E[min(6000, D)] = ${at6000}`);
    // Ignoring the censoring (every usage taken as the demand) would put it near the logged budgets instead.
    const short = heads('short').cost!;
    assert.ok(Math.abs(expectedUsage(short.mu[0]!, short.sigma[0]!, 6000) / 804 - 1) < 0.1);
    assert.ok(Math.abs(expectedUsage(long.mu[1]!, long.sigma[1]!, 6000) / 402 - 1) < 0.1);
    assert.ok(Math.abs(cw.lp[0]! / price[0]! - 1) < 1e-3, 'λ·price with λ = 1');
  });

  it('the greedy split with a cost part is within 0.5 % of the numerical optimum of r̂ and moves tokens off an expensive agent', () => {
    const rng = mulberry32(9);
    let worst = 1;
    let moved = 0;
    for (let k = 0; k < 60; k++) {
      const n = 2 + Math.floor(rng() * 6);
      const h: Heads = {
        need: Float64Array.from({ length: n }, () => 300 + rng() * 3000),
        weight: Float64Array.from({ length: n }, () => 0.1 + rng() * 0.8),
        shape: Float64Array.from({ length: n }, () => 1 + rng() * 20),
        cost: {
          lp: Float64Array.from({ length: n }, () => (rng() < 0.3 ? 0 : 2e-5 * rng())),
          mu: Float64Array.from({ length: n }, () => Math.log(300 + rng() * 4000)),
          sigma: Float64Array.from({ length: n }, () => 0.05 + rng() * 0.5),
        },
      };
      const mins = Array.from({ length: n }, () => 50);
      const caps = Array.from({ length: n }, () => 1e6);
      const total = 1000 * n;
      const g = greedySplit(h, mins, caps, total);
      assert.equal(g.reduce((s, v) => s + v, 0), total);
      const best = numericOracle((b) => predict(h, b), mins, caps, total, [g]);
      worst = Math.min(worst, predict(h, g) / predict(h, best));
      const { cost: _c, ...plain } = h;
      const free = greedySplit(plain, mins, caps, total);
      assert.ok(predict(h, g) >= predict(h, free) - 1e-12, 'never worse by r̂ than the split that ignores cost');
      if (predict(h, g) > predict(h, free) + 1e-4) moved++;
    }
    assert.ok(worst > 0.995, `worst ratio to the numerical optimum ${worst}`);
    assert.ok(moved > 10, `the cost part changed the split on ${moved} of 60`);
  });

  it('heads without a cost part predict and split exactly as before', () => {
    const h: Heads = { need: Float64Array.of(500, 2000), weight: Float64Array.of(0.5, 0.8), shape: Float64Array.of(3, 3) };
    assert.equal(predict(h, [700, 1300]), response(h, 0, 700) * response(h, 1, 1300));
    const withZero: Heads = { ...h, cost: { lp: Float64Array.of(0, 0), mu: Float64Array.of(6, 7), sigma: Float64Array.of(0.1, 0.1) } };
    assert.equal(predict(withZero, [700, 1300]), predict(h, [700, 1300]));
  });
});
