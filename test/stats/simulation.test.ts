import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalCdf, tTwoSided } from '../../src/stats/distributions.js';
import { csHalfwidth, sequentialFromVariance } from '../../src/stats/sequential.js';
import { rng } from './rng.js';

const ALPHA = 0.05;
/** Same burn-in as a guardrail's default minSamples: variances are not trusted before it. */
const BURN_IN = 50;

/**
 * Runs `sims` two-arm experiments of up to `steps` observations per arm, adding one observation to
 * each arm per step and looking after every step (from BURN_IN on). Returns how many were ever flagged
 * by the sequential interval and by a naive fixed-horizon z-test peeked at every step, and how many a
 * single fixed-horizon Welch look at the end rejects.
 */
function simulate(opts: { sims: number; steps: number; effect: number; seed: number; draw: (r: ReturnType<typeof rng>) => number }) {
  const r = rng(opts.seed);
  let sequential = 0;
  let naivePeeking = 0;
  let fixed = 0;
  let wrongSign = 0;
  for (let s = 0; s < opts.sims; s++) {
    let nt = 0, mt = 0, m2t = 0, nc = 0, mc = 0, m2c = 0;
    let seqHit = false;
    let naiveHit = false;
    for (let k = 0; k < opts.steps; k++) {
      const xt = opts.draw(r) + opts.effect;
      const xc = opts.draw(r);
      nt++; let d = xt - mt; mt += d / nt; m2t += d * (xt - mt);
      nc++; d = xc - mc; mc += d / nc; m2c += d * (xc - mc);
      if (nt < BURN_IN) continue;
      const varDiff = m2t / (nt - 1) / nt + m2c / (nc - 1) / nc;
      const diff = mt - mc;
      if (!seqHit) {
        const hw = csHalfwidth(varDiff * (nt + nc), nt + nc, ALPHA);
        if (Math.abs(diff) > hw) {
          seqHit = true;
          if (Math.sign(diff) !== Math.sign(opts.effect || 1) && opts.effect !== 0) wrongSign++;
        }
      }
      if (!naiveHit && Math.abs(diff) / Math.sqrt(varDiff) > 1.959964) naiveHit = true;
    }
    if (seqHit) sequential++;
    if (naiveHit) naivePeeking++;
    const vt = m2t / (nt - 1) / nt;
    const vc = m2c / (nc - 1) / nc;
    const df = (vt + vc) ** 2 / (vt ** 2 / (nt - 1) + vc ** 2 / (nc - 1));
    if (tTwoSided((mt - mc) / Math.sqrt(vt + vc), df) < ALPHA) fixed++;
  }
  return { sequential: sequential / opts.sims, naivePeeking: naivePeeking / opts.sims, fixed: fixed / opts.sims, wrongSign };
}

const normalQuality = (r: ReturnType<typeof rng>) => 0.7 + 0.2 * r.normal();
const bernoulliQuality = (r: ReturnType<typeof rng>) => (r.uniform() < 0.3 ? 1 : 0);

describe('A/A: 500 simulated experiments monitored at every step', () => {
  it(`keep the sequential false-alarm rate ≤ α = ${ALPHA} (normal metric), where naive peeking does not`, () => {
    const res = simulate({ sims: 500, steps: 2000, effect: 0, seed: 11, draw: normalQuality });
    assert.ok(res.sequential <= ALPHA, `sequential false alarms ${res.sequential}`);
    assert.ok(res.naivePeeking > 2 * ALPHA, `naive peeking should inflate false alarms, got ${res.naivePeeking}`);
  });
  it(`keep the sequential false-alarm rate ≤ α = ${ALPHA} (Bernoulli metric, e.g. a ceiling-hit rate)`, () => {
    const res = simulate({ sims: 500, steps: 2000, effect: 0, seed: 12, draw: bernoulliQuality });
    assert.ok(res.sequential <= ALPHA, `sequential false alarms ${res.sequential}`);
  });
});

describe('A/B with a known effect', () => {
  it('fixed-horizon Welch reaches its design power (80 % at n = 252 per arm for d = 0.25)', () => {
    // n = 2 (z_.975 + z_.8)² / d² = 251.2 → 252 per arm.
    const res = simulate({ sims: 1000, steps: 252, effect: 0.05, seed: 21, draw: normalQuality });
    assert.ok(Math.abs(res.fixed - 0.8) < 0.05, `empirical power ${res.fixed}`);
  });
  it('the sequential interval detects the effect at least at its analytic power, with the right sign', () => {
    const steps = 1000;
    const effect = 0.05;
    // Detection by the last look alone has power Φ(δ/se − hw/se); looking earlier can only add.
    const varDiff = (2 * 0.2 * 0.2) / steps;
    const hw = csHalfwidth(varDiff * 2 * steps, 2 * steps, ALPHA);
    const expected = normalCdf((effect - hw) / Math.sqrt(varDiff));
    const res = simulate({ sims: 500, steps, effect, seed: 22, draw: normalQuality });
    assert.ok(expected > 0.5, `design check: expected power ${expected}`);
    assert.ok(res.sequential >= expected - 0.05, `sequential power ${res.sequential} < expected ${expected}`);
    assert.equal(res.wrongSign, 0);
  });
  it('the interval from summary moments is the one the simulation uses', () => {
    const s = sequentialFromVariance(0.05, 0.0001, 2000, 0.7, ALPHA);
    const hw = csHalfwidth(0.0001 * 2000, 2000, ALPHA);
    assert.ok(Math.abs(s.ci[1] - 0.05 - hw) < 1e-12);
  });
});
