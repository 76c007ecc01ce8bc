import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { decide, EXPLORE_DEFAULTS, withMembers, type ExploreOptions, type PolicyAgent } from '../../src/learner/policy.js';
import type { Heads } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { namedWorld } from '../../src/learner/sim/family.js';
import { memberPrior, runLoop } from '../../src/learner/sim/loop.js';
import { loadWorld } from '../../src/learner/sim/world.js';

/**
 * The randomized-prior ensemble's exploration with a joint prior (bench option `--ensemble … --ensemble-joint mu[:tau]`,
 * LoopOptions.ensemble; docs/learner.md "Ensemble members that disagree about several agents at once"). No Redis: pure.
 */
const explore: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };
const agents: PolicyAgent[] = [
  { min: 50, cap: 4000 },
  { min: 50, cap: 4000 },
  { min: 50, cap: 4000 },
];
const heads: Heads = { need: Float64Array.from([300, 600, 900]), weight: Float64Array.from([0.5, 0.6, 0.4]), shape: Float64Array.from([1e6, 1e6, 1e6]) };
const total = 3000;

describe('ensemble members: logged probabilities', () => {
  it('each member split has exactly share/K, the policy keeps (1 − share) of its own, a member equal to a candidate adds to it', () => {
    const dec = decide(heads, agents, total, explore, mulberry32(5));
    const greedy = dec.candidates[0]!;
    const far1 = [50, 50, 2900];
    const far2 = [2900, 50, 50];
    const share = 0.12;
    const splits = [far1, greedy.slice(), far2];
    const out = withMembers(dec, splits, share, mulberry32(9));
    const each = share / 3;
    assert.equal(out.candidates.length, dec.candidates.length + 2, 'the member equal to the greedy split is merged into it');
    for (let k = 0; k < dec.candidates.length; k++) {
      assert.deepEqual(out.candidates[k], dec.candidates[k]);
      assert.equal(out.probs[k], dec.probs[k]! * (1 - share) + (k === 0 ? each : 0), `candidate ${k}`);
    }
    assert.deepEqual(out.candidates.slice(dec.candidates.length), [far1, far2]);
    assert.equal(out.probs[dec.candidates.length], each);
    assert.equal(out.probs[dec.candidates.length + 1], each);
    assert.ok(Math.abs(out.probs.reduce((s, p) => s + p, 0) - 1) < 1e-12);
    assert.deepEqual(out.budgets, out.candidates[out.chosen]);
  });

  it('plays each candidate at its logged probability (20,000 draws)', () => {
    const share = 0.3;
    const splits = [
      [50, 50, 2900],
      [2900, 50, 50],
    ];
    const counts = new Map<string, number>();
    let probs: number[] = [];
    let candidates: number[][] = [];
    const rng = mulberry32(11);
    const N = 20000;
    for (let t = 0; t < N; t++) {
      const dec = decide(heads, agents, total, explore, rng);
      const out = withMembers(dec, splits, share, rng);
      probs = out.probs;
      candidates = out.candidates;
      const key = out.budgets.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (let k = 0; k < candidates.length; k++) {
      const f = (counts.get(candidates[k]!.join(',')) ?? 0) / N;
      const se = Math.sqrt((probs[k]! * (1 - probs[k]!)) / N);
      assert.ok(Math.abs(f - probs[k]!) < 4 * se + 1e-9, `candidate ${k}: frequency ${f} against ${probs[k]}`);
    }
  });

  it('keepGreedy: the greedy split keeps its probability, members take min(share, (1 − p0)/2) from the exploring candidates', () => {
    const dec = decide(heads, agents, total, explore, mulberry32(5));
    const p0 = dec.probs[0]!;
    const far1 = [50, 50, 2900];
    const far2 = [2900, 50, 50];
    for (const share of [0.05, 0.9]) {
      const s = Math.min(share, (1 - p0) / 2);
      const out = withMembers(dec, [far1, far2], share, mulberry32(9), true);
      assert.equal(out.probs[0], p0, 'the greedy split keeps its probability');
      for (let k = 1; k < dec.candidates.length; k++) assert.equal(out.probs[k], dec.probs[k]! * (1 - s / (1 - p0)), `candidate ${k}`);
      assert.deepEqual(out.candidates.slice(dec.candidates.length), [far1, far2]);
      assert.equal(out.probs[dec.candidates.length], s / 2);
      assert.equal(out.probs[dec.candidates.length + 1], s / 2);
      assert.ok(Math.abs(out.probs.reduce((a, p) => a + p, 0) - 1) < 1e-12);
    }
    // A member equal to an exploring candidate adds to it.
    const merged = withMembers(dec, [dec.candidates[1]!.slice(), far1], 0.05, mulberry32(9), true);
    assert.equal(merged.probs[1], dec.probs[1]! * (1 - 0.05 / (1 - p0)) + 0.025);
    // Frequencies over 20,000 decisions.
    const rng = mulberry32(17);
    const counts = new Map<string, number>();
    let out = dec;
    const N = 20000;
    for (let t = 0; t < N; t++) {
      out = withMembers(decide(heads, agents, total, explore, rng), [far1, far2], 0.3, rng, true);
      const key = out.budgets.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (let k = 0; k < out.candidates.length; k++) {
      const f = (counts.get(out.candidates[k]!.join(',')) ?? 0) / N;
      const se = Math.sqrt((out.probs[k]! * (1 - out.probs[k]!)) / N);
      assert.ok(Math.abs(f - out.probs[k]!) < 4 * se + 1e-9, `candidate ${k}: frequency ${f} against ${out.probs[k]}`);
    }
  });

  it('with no members or share 0 the decision is the policy\u2019s own, untouched, and no draw is taken', () => {
    const dec = decide(heads, agents, total, explore, mulberry32(5));
    const rng = mulberry32(3);
    assert.equal(withMembers(dec, [], 0.1, rng), dec);
    assert.equal(withMembers(dec, [[50, 50, 2900]], 0, rng), dec);
    assert.equal(withMembers(dec, [], 0.1, rng, true), dec);
    assert.equal(withMembers(dec, [[50, 50, 2900]], 0, rng, true), dec);
    assert.equal(rng(), mulberry32(3)(), 'the stream was not advanced');
  });
});

describe('the joint prior (memberPrior)', () => {
  const n = 3;
  const b2 = Float32Array.from({ length: 6 * n }, (_, k) => 0.1 * k - 0.5);
  const gauss = (r: () => number) => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());

  it('without `joint` it draws what the independent ensemble drew, draw for draw', () => {
    const r = mulberry32(42);
    const expected = Float32Array.from(b2);
    for (let i = 0; i < n; i++) {
      expected[n + i] = expected[n + i]! + 2 * gauss(r);
      expected[i] = expected[i]! + 1 * gauss(r);
    }
    assert.deepEqual(memberPrior(b2, n, 2, undefined, mulberry32(42)), expected);
  });

  it('with `joint` one common shift N(mu, tau²), drawn first, moves every agent\u2019s weight logit; the rest as before', () => {
    const r = mulberry32(42);
    const common = -2 + 0.5 * gauss(r);
    const expected = Float32Array.from(b2);
    for (let i = 0; i < n; i++) {
      expected[n + i] = expected[n + i]! + common + 2 * gauss(r);
      expected[i] = expected[i]! + 1 * gauss(r);
    }
    const got = memberPrior(b2, n, 2, { mu: -2, tau: 0.5 }, mulberry32(42));
    assert.deepEqual(got, expected);
    // tau 0: the shift is exactly mu; need, shape and threshold outputs untouched beyond the need draw.
    const z = memberPrior(b2, n, 0, { mu: -2, tau: 0 }, mulberry32(1));
    for (let i = 0; i < n; i++) {
      assert.equal(z[n + i], Math.fround(b2[n + i]! - 2));
      assert.equal(z[i], b2[i]);
    }
    assert.deepEqual(z.slice(2 * n), b2.slice(2 * n));
    assert.deepEqual(b2, Float32Array.from({ length: 6 * n }, (_, k) => 0.1 * k - 0.5), 'the input is not modified');
  });
});

describe('the loop with the ensemble off', () => {
  it('decides exactly as with no ensemble option: share 0 or K 0 is off', async () => {
    const { tf } = await loadTf();
    const world = namedWorld(loadWorld('support-basic'));
    const base = { world, explore, outcomes: 600, seed: 3, evalContexts: 0, checkpointEvery: 600, driftRecovery: null, train: { epochs: 1, minSteps: 10 } } as const;
    const plain = await runLoop(tf, base);
    const share0 = await runLoop(tf, { ...base, ensemble: { k: 4, share: 0, sigma: 2, steps: 10, joint: { mu: -2, tau: 0 } } });
    const k0 = await runLoop(tf, { ...base, ensemble: { k: 0, share: 0.1, sigma: 2, steps: 10, joint: { mu: -2, tau: 0 } } });
    for (const other of [share0, k0]) {
      assert.equal(other.events.length, plain.events.length);
      for (let t = 0; t < plain.events.length; t++) {
        const a = plain.events[t]!;
        const b = other.events[t]!;
        assert.deepEqual([b.b, b.C, b.P, b.k, b.m], [a.b, a.C, a.P, a.k, a.m], `decision ${t}`);
      }
      assert.equal(other.ensembleStats, undefined);
    }
  });
});
