import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { importanceWeight, shareDistance } from '../../src/learner/ope-service.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { bootstrap, dm, dr, ess, ips, offPolicyReport, snips, type OpeSample } from '../../src/stats/ope.js';

/**
 * Toy problem with analytic values: the logging policy plays actions 0, 1, 2 with probabilities 0.5, 0.3,
 * 0.2 and rewards are 1, 0, 0.5. The log holds each action in exact proportion (50, 30, 20 of 100 rows).
 * Target: always action 2, true value 0.5.
 */
const P = [0.5, 0.3, 0.2];
const R = [1, 0, 0.5];
function toyLog(dmValue: (a: number) => number): OpeSample[] {
  const rows: OpeSample[] = [];
  P.forEach((p, a) => {
    for (let i = 0; i < Math.round(p * 100); i++) rows.push({ r: R[a]!, w: a === 2 ? 1 / p : 0, dmTarget: dmValue(2), dmLogged: dmValue(a) });
  });
  return rows;
}

describe('off-policy estimators on a toy problem', () => {
  it('IPS, SNIPS and DR recover the analytic value; ESS is (Σw)²/Σw²', () => {
    const s = toyLog(() => 0);
    assert.ok(Math.abs(ips(s) - 0.5) < 1e-12);
    assert.ok(Math.abs(snips(s) - 0.5) < 1e-12);
    assert.ok(Math.abs(dr(s) - 0.5) < 1e-12, 'DR with a zero model is IPS');
    assert.equal(ess(s.map((x) => x.w)), 20);
  });

  it('DR stays exact with a wrong reward model (the weights correct it), DM does not', () => {
    const s = toyLog(() => 0.3);
    assert.ok(Math.abs(dr(s) - 0.5) < 1e-12);
    assert.ok(Math.abs(dm(s) - 0.3) < 1e-12);
    const perfect = toyLog((a) => R[a]!);
    assert.ok(Math.abs(dr(perfect) - 0.5) < 1e-12);
  });

  it('SNIPS normalises away a constant scale error in the weights, IPS does not', () => {
    const s = toyLog(() => 0).map((x) => ({ ...x, w: x.w * 2 }));
    assert.ok(Math.abs(snips(s) - 0.5) < 1e-12);
    assert.ok(Math.abs(ips(s) - 1) < 1e-12);
  });

  it('bootstrap intervals contain the estimate, are reproducible with a seed, and shrink with more data', () => {
    const rng = mulberry32(3);
    const draw = (n: number) =>
      Array.from({ length: n }, () => {
        const u = rng();
        const a = u < 0.5 ? 0 : u < 0.8 ? 1 : 2;
        return { r: R[a]! + (rng() - 0.5) * 0.2, w: a === 2 ? 5 : 0, dmTarget: 0.5, dmLogged: R[a]! };
      });
    const small = draw(400);
    const big = draw(6400);
    const a = bootstrap(small, ips, { resamples: 300, rng: mulberry32(1) });
    const b = bootstrap(small, ips, { resamples: 300, rng: mulberry32(1) });
    assert.deepEqual(a, b);
    assert.ok(a.lo <= a.value && a.value <= a.hi);
    const c = bootstrap(big, ips, { resamples: 300, rng: mulberry32(1) });
    assert.ok(c.hi - c.lo < (a.hi - a.lo) / 2);
    const rep = offPolicyReport(big, { resamples: 200, rng: mulberry32(2) });
    assert.ok(rep.dr && rep.dr.lo <= 0.5 && 0.5 <= rep.dr.hi, `DR CI ${JSON.stringify(rep.dr)}`);
    assert.equal(rep.n, 6400);
  });
});

describe('importance weights of budget-vector actions', () => {
  const ev: LoggedEvent = { id: 'x', t: 0, s: 'learn', f: {}, T: 1000, b: { a: 600, b: 400 }, q: 1, c: null, C: [[500, 500], [600, 400], [605, 395]], P: [0.6, 0.3, 0.1], k: 1 };

  it('sums the probability of every logged candidate within the tolerance of the target action', () => {
    assert.equal(shareDistance([600, 400], [605, 395], 1000), 0.005);
    const exact = importanceWeight(ev, ['a', 'b'], [600, 400], 0);
    assert.ok(Math.abs(exact.w - 1 / 0.3) < 1e-12);
    const near = importanceWeight(ev, ['a', 'b'], [600, 400], 0.01);
    assert.ok(Math.abs(near.w - 1 / 0.4) < 1e-12, 'two candidates within 1 % of the total');
    const other = importanceWeight(ev, ['a', 'b'], [500, 500], 0.01);
    assert.deepEqual(other, { w: 0, supported: true });
    assert.deepEqual(importanceWeight(ev, ['a', 'b'], [900, 100], 0.01), { w: 0, supported: false });
  });

  it('treats a deterministic strategy’s decision as probability 1', () => {
    const det: LoggedEvent = { id: 'y', t: 0, s: 'static', f: {}, T: 1000, b: { a: 700, b: 300 }, q: 1, c: null };
    assert.deepEqual(importanceWeight(det, ['a', 'b'], [700, 300], 0), { w: 1, supported: true });
    assert.deepEqual(importanceWeight(det, ['a', 'b'], [300, 700], 0.02), { w: 0, supported: false });
  });
});
