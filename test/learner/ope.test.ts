import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { importanceWeight, shareDistance } from '../../src/learner/ope-service.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { bootstrap, dm, dr, ess, ips, MIN_ESS, offPolicyReport, snips, type OpeSample } from '../../src/stats/ope.js';
import fc from 'fast-check';
import type { DecisionRouting } from '../../src/allocation/decisions.js';
import { toDsjson } from '../../src/learner/dsjson.js';
import { loggingPolicyOf } from '../../src/learner/hooks.js';
import { learnerMetaOf } from '../../src/learner/kind.js';
import { candidatesAround } from '../../src/learner/policy.js';
import { mixDistributions } from '../../src/learner/propensity.js';
import type { Pipeline } from '../../src/pipelines/schema.js';

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

/** Two agents, total 1000; A/B of two static splits and the learner's control arm, with known truth. */
const toyPipeline = { id: 'toy', version: 1, defaultTotalTokens: 1000, agents: [{ name: 'a', minTokens: 0, maxTokens: 1000 }, { name: 'b', minTokens: 0, maxTokens: 1000 }] } as unknown as Pipeline;
const A = [700, 300];
const B = [300, 700];
const rec = (served: number[], routing?: DecisionRouting, meta?: Record<string, unknown>) => ({
  budgets: { a: served[0]!, b: served[1]! },
  totalTokens: 1000,
  ...(routing ? { routing } : {}),
  ...(meta ? { meta } : {}),
});

describe('logging propensities', () => {
  it('mixes distributions: identical actions are one, their probabilities add, zeros are left out', () => {
    const m = mixDistributions([
      { q: 0.5, C: [A, B], P: [0.8, 0.2] },
      { q: 0.5, C: [B, [500, 500]], P: [1, 0] },
    ]);
    assert.deepEqual(m.C, [A, B]);
    assert.deepEqual(m.P.map((p) => Math.round(p * 1e12) / 1e12), [0.4, 0.6]);
  });

  it('an A/B decision is logged with its variant probability (weight × coverage), the other variant’s action beside it', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.05, max: 1, noNaN: true }), fc.double({ min: 0.05, max: 0.95, noNaN: true }), (coverage, wA) => {
        // Variant A weight wA, B 1 − wA, both at `coverage`; the rest goes to the default, uniform.
        const qA = coverage * wA;
        const qB = coverage * (1 - wA);
        const alt = [{ s: 'b', q: qB, b: B }, ...(coverage < 1 ? [{ s: '@uniform', q: 1 - coverage, b: [500, 500] }] : [])];
        const pol = loggingPolicyOf(rec(A, { q: qA, alt }), toyPipeline);
        assert.ok(Math.abs(pol.P![pol.k!]! - qA) < 1e-12, `P ${pol.P![pol.k!]} vs ${qA}`);
        assert.deepEqual(pol.C![pol.k!], A);
        assert.ok(Math.abs(pol.P!.reduce((s, p) => s + p, 0) - 1) < 1e-9);
      }),
    );
    // Both variants giving this request the same split: one action with their summed probability.
    const same = loggingPolicyOf(rec(A, { q: 0.5, alt: [{ s: 'b', q: 0.5, b: A }] }), toyPipeline);
    assert.deepEqual([same.C, same.P, same.k], [[A], [1], 0]);
    assert.deepEqual(loggingPolicyOf(rec(A), toyPipeline), {}, 'a certain decision carries no distribution (probability 1)');
  });

  it('IPS on A/B logs recovers the variant’s value with the logged probabilities, and halves it with probability 1', () => {
    // Truth: A earns 0.8, B 0.4; the log holds each in exact proportion (50/50). Target: always A.
    const events: LoggedEvent[] = [];
    for (let i = 0; i < 100; i++) {
      const served = i % 2 === 0 ? A : B;
      const pol = loggingPolicyOf(rec(served, { q: 0.5, alt: [{ s: served === A ? 'b' : 'a', q: 0.5, b: served === A ? B : A }] }), toyPipeline);
      events.push({ id: String(i), t: 0, s: 'x', f: {}, T: 1000, b: { a: served[0]!, b: served[1]! }, q: served === A ? 0.8 : 0.4, c: null, ...pol });
    }
    const samples = (evs: LoggedEvent[]) => evs.map((e) => ({ r: e.q, w: importanceWeight(e, ['a', 'b'], A, 0).w, dmTarget: 0, dmLogged: 0 }));
    assert.ok(Math.abs(ips(samples(events)) - 0.8) < 1e-12);
    const asBefore = events.map(({ C: _c, P: _p, k: _k, ...e }) => e as LoggedEvent);
    assert.ok(Math.abs(ips(samples(asBefore)) - 0.4) < 1e-12, 'probability 1 (the old log) halves the value');
  });

  it('a learned decision with the guard’s control arm logs (1 − s)·its own probabilities + s on the control split', () => {
    const g = [600, 400];
    const C = candidatesAround(g, [{ min: 0, cap: 1000 }, { min: 0, cap: 1000 }], 1000, 0.5);
    const P = C.map((_, k) => (k === 0 ? 0.9 : 0.1 / (C.length - 1)));
    const served = C[0]!;
    const x = { s: 0.1, a: 0 as const, b: [500, 500], c: '@uniform' };
    const m = learnerMetaOf({ ...rec(served, undefined, { learner: { m: 2, k: 0, p: 0.9, g, d: 0.5, P, x } }) }, toyPipeline)!;
    const at = (b: number[]) => m.P[m.C.findIndex((c) => c[0] === b[0] && c[1] === b[1])]!;
    assert.ok(Math.abs(at(served) - 0.81) < 1e-12);
    // The uniform split is also one of the learner's candidates: its probabilities add.
    assert.ok(Math.abs(at([500, 500]) - (0.9 * (0.1 / (C.length - 1)) + 0.1)) < 1e-12);
    const asControl = learnerMetaOf({ ...rec([500, 500], undefined, { learner: { m: 2, k: 0, p: 0.9, g, d: 0.5, P, x: { ...x, a: 1 } } }) }, toyPipeline)!;
    assert.deepEqual(asControl.C[asControl.k], [500, 500]);
    assert.equal(learnerMetaOf({ ...rec([10, 990], undefined, { learner: { m: 2, k: 0, p: 0.9, g, d: 0.5, P, x: { ...x, a: 1 } } }) }, toyPipeline), undefined, 'served ≠ the logged control split');
    // The guard's offset goes to the event as logged, only as a finite number of a sane size.
    const policyWith = (z: unknown) => loggingPolicyOf(rec(served, undefined, { learner: { m: 2, k: 0, p: 0.9, g, d: 0.5, P, x: { ...x, z } } }), toyPipeline);
    assert.equal(policyWith(0.4321).z, 0.4321);
    assert.equal(policyWith(-0.02).a, 0);
    for (const bad of ['0.4', Number.NaN, Infinity, 1e9, null]) assert.equal('z' in policyWith(bad), false, `z ${String(bad)}`);
    assert.equal('z' in loggingPolicyOf(rec(served, undefined, { learner: { m: 2, k: 0, p: 0.9, g, d: 0.5, P, x } }), toyPipeline), false);
  });
});

describe('estimates without support', () => {
  it('are null with a reason instead of 0 [0, 0]', () => {
    const none = offPolicyReport(
      Array.from({ length: 50 }, () => ({ r: 0.7, w: 0, dmTarget: 0.6, dmLogged: 0.7 })),
      { resamples: 50, rng: mulberry32(1) },
    );
    assert.deepEqual([none.ips, none.snips, none.dr], [null, null, null]);
    assert.match(none.reason!, /no support/);
    assert.ok(Math.abs(none.dm! - 0.6) < 1e-12, 'DM, the model alone, is still reported');
    const one = offPolicyReport([{ r: 1, w: 2, dmTarget: 0, dmLogged: 0 }, { r: 0, w: 0, dmTarget: 0, dmLogged: 0 }], { resamples: 50, rng: mulberry32(1) });
    assert.equal(one.ips, null);
    assert.match(one.reason!, /too little support/);
    const empty = offPolicyReport([], { resamples: 50, rng: mulberry32(1) });
    assert.deepEqual([empty.ips, empty.dm, empty.reason !== null], [null, null, true]);
  });

  it('are null below an effective sample size of MIN_ESS, where the bootstrap intervals under-cover; above it they cover the truth', () => {
    // Seeded logs of 600 decisions: the target's action (true value 0.85, Bernoulli rewards; the others 0.5) is played
    // with probability p. At p = 0.02 (about 12 matches) the percentile bootstrap covered the truth in well under 90 %
    // of trials (measured from outside: SNIPS 42–65 %), so no interval is given; at p = 0.2 they cover it.
    const trial = (seed: number, p: number) => {
      const rng = mulberry32(seed);
      const s: OpeSample[] = [];
      for (let i = 0; i < 600; i++) {
        const hit = rng() < p;
        s.push({ r: rng() < (hit ? 0.85 : 0.5) ? 1 : 0, w: hit ? 1 / p : 0, dmTarget: 0.7, dmLogged: 0.6 });
      }
      return offPolicyReport(s, { resamples: 200, rng: mulberry32(seed + 1) });
    };
    for (let seed = 1; seed <= 30; seed++) {
      const rare = trial(seed, 0.02);
      assert.ok(rare.ess < MIN_ESS, `seed ${seed}: ESS ${rare.ess}`);
      assert.deepEqual([rare.ips, rare.snips, rare.dr], [null, null, null], `seed ${seed}`);
      assert.match(rare.reason!, /effective sample size/);
      assert.ok(rare.dm !== null, 'DM is still reported');
    }
    let covered = 0;
    const T = 100;
    for (let seed = 1; seed <= T; seed++) {
      const r = trial(1000 + seed, 0.2);
      assert.ok(r.snips !== null && r.dr !== null, `seed ${seed}: ${r.reason}`);
      if (r.snips.lo <= 0.85 && 0.85 <= r.snips.hi) covered++;
    }
    // 95 % intervals: fewer than 80 of 100 would have probability < 1e-6 at 95 % coverage.
    assert.ok(covered >= 80, `SNIPS covered the truth in ${covered} of ${T} trials`);
  });
});

describe('DSJSON export', () => {
  it('keeps the true propensity of a decision that got the default reward', () => {
    const pol = loggingPolicyOf(rec(A, { q: 0.25, alt: [{ s: 'b', q: 0.75, b: B }] }), toyPipeline);
    const ev: LoggedEvent = { id: 'd1', t: 0, s: 'x', f: {}, T: 1000, b: { a: 700, b: 300 }, q: 0, c: null, d: 1, ...pol };
    const line = JSON.parse(toDsjson(ev, ['a', 'b'])) as { _label_probability: number; p: number[]; a: number[]; _defaultReward: boolean };
    assert.equal(line._label_probability, 0.25);
    assert.deepEqual(line.p, [0.25, 0.75]);
    assert.equal(line._defaultReward, true);
  });
});
