import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forward, initialWeights } from '../../src/learner/model.js';
import { candidatesAround, decideAround, randomSplit, SAFE_START_EPSILON, wideCuts, type ExploreOptions } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';

/** The safe start's wide exploration (ExploreOptions.wideStart) and the weight prior of initialWeights; both off by default. */
describe('wide exploration during the safe start', () => {
  const agents = [
    { min: 100, cap: 8000 },
    { min: 0, cap: 8000 },
    { min: 0, cap: 2500 },
    { min: 300, cap: 8000 },
  ];
  const total = 9000;
  const base = [2250, 2250, 2250, 2250];
  const plain: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: 0.3, decayFrom: 2 };
  const plainC = candidatesAround(base, agents, total, 0.5);
  const plainP = plainC.map((_, k) => SAFE_START_EPSILON / plainC.length + (k === 0 ? 1 - SAFE_START_EPSILON : 0));

  it('cut: every agent cut deep is a logged candidate with exactly ρ/(number of cuts); the safe start\'s own candidates keep (1 − ρ) of theirs', () => {
    const rho = 0.3;
    const d = decideAround(base, agents, total, { ...plain, wideStart: rho, wideDepth: 2 }, mulberry32(3));
    const cuts = wideCuts(base, agents, 2);
    assert.equal(cuts.length, 4, 'every agent has room above its minimum');
    assert.deepEqual(d.candidates.slice(0, plainC.length), plainC, 'the safe start\'s candidates come first, unchanged');
    assert.deepEqual(d.candidates.slice(plainC.length), cuts, 'the cuts are appended in agent order');
    plainP.forEach((p, k) => assert.ok(Math.abs(d.probs[k]! - (1 - rho) * p) < 1e-15, `candidate ${k}`));
    cuts.forEach((c, j) => {
      assert.ok(Math.abs(d.probs[plainC.length + j]! - rho / 4) < 1e-15, `cut ${j}: ${d.probs[plainC.length + j]}`);
      assert.ok(Math.abs(c[j]! - Math.max(agents[j]!.min, Math.round(base[j]! * Math.exp(-2)))) <= 1, `agent ${j} keeps e^-2 of its budget`);
      assert.equal(c.reduce((s, v) => s + v, 0), total, 'the freed tokens go to the others');
      c.forEach((v, i) => assert.ok(v >= agents[i]!.min && v <= agents[i]!.cap, 'within the bounds'));
    });
    assert.ok(Math.abs(d.probs.reduce((s, v) => s + v, 0) - 1) < 1e-12);
    // Drawn at the logged rates.
    const rng = mulberry32(9);
    const N = 20_000;
    const counts = new Array<number>(d.candidates.length).fill(0);
    for (let t = 0; t < N; t++) {
      const e = decideAround(base, agents, total, { ...plain, wideStart: rho, wideDepth: 2 }, rng);
      assert.deepEqual(e.candidates, d.candidates);
      assert.deepEqual(e.budgets, e.candidates[e.chosen]);
      counts[e.chosen]!++;
    }
    counts.forEach((c, k) => {
      const sd = Math.sqrt(N * d.probs[k]! * (1 - d.probs[k]!));
      assert.ok(Math.abs(c - N * d.probs[k]!) <= 5 * sd + 1, `candidate ${k}: ${c} draws for p=${d.probs[k]}`);
    });
  });

  it('cut to the minimum (depth Infinity); an agent already at its minimum is not cut, and the share is spread over the others', () => {
    const cuts = wideCuts(base, agents, Infinity);
    assert.deepEqual(cuts.map((c, i) => c[i]), [100, 0, 0, 300]);
    const atMin = [100, 3000, 2500, 3400];
    const c2 = wideCuts(atMin, agents, Infinity);
    assert.equal(c2.length, 3, 'agent 0 sits at its minimum');
    const d = decideAround(atMin, agents, total, { ...plain, wideStart: 0.3, wideDepth: Infinity }, mulberry32(1));
    const own = candidatesAround(atMin, agents, total, 0.5);
    for (const c of c2) {
      const k = d.candidates.findIndex((x) => x.join() === c.join());
      assert.ok(k >= own.length, 'a cut to the minimum is new here');
      assert.ok(Math.abs(d.probs[k]! - 0.1) < 1e-15);
    }
    assert.ok(Math.abs(d.probs.reduce((s, v) => s + v, 0) - 1) < 1e-12);
  });

  it('random: one split drawn over the simplex (the same draws as randomSplit) with probability exactly ρ', () => {
    const d = decideAround(base, agents, total, { ...plain, wideStart: 0.25, wideKind: 'random' }, mulberry32(11));
    const r = randomSplit(agents, total, mulberry32(11));
    assert.equal(r.reduce((s, v) => s + v, 0), total);
    assert.equal(d.candidates.length, plainC.length + 1);
    assert.deepEqual(d.candidates.at(-1), r);
    assert.ok(Math.abs(d.probs.at(-1)! - 0.25) < 1e-15);
    plainP.forEach((p, k) => assert.ok(Math.abs(d.probs[k]! - 0.75 * p) < 1e-15));
  });

  it('off (wideStart 0 or absent): the safe start decides exactly as before, draw for draw', () => {
    const a = mulberry32(21);
    const b = mulberry32(21);
    const c = mulberry32(21);
    for (let t = 0; t < 2000; t++) {
      const x = decideAround(base, agents, total, plain, a);
      const y = decideAround(base, agents, total, { ...plain, wideStart: 0, wideKind: 'random', wideDepth: Infinity }, b);
      assert.deepEqual(x, y, `decision ${t}`);
      assert.deepEqual(x.candidates, plainC);
      assert.deepEqual(x.probs, plainP);
      c();
    }
    const next = [a(), b(), c()];
    assert.equal(next[0], next[1], 'both streams stay in step');
    assert.equal(next[0], next[2], 'one draw per decision, as before');
  });
});

describe('the per-agent weight prior (initialWeights weightPrior)', () => {
  it('0.5 (the default) gives the same weights bit for bit; another value moves every agent\'s initial weight to it', () => {
    const a = initialWeights(5, 4, 8000, mulberry32(1));
    const b = initialWeights(5, 4, 8000, mulberry32(1), undefined, false, 0.5);
    assert.deepEqual(a, b);
    const c = initialWeights(5, 4, 8000, mulberry32(1), undefined, false, 0.2);
    const x = Float32Array.from([1, 0.3, -1, 0, 2]);
    const ha = forward(a, x);
    const hc = forward(c, x);
    for (let i = 0; i < 4; i++) {
      assert.ok(Math.abs(ha.weight[i]! - 0.5) < 0.05, `default prior ${ha.weight[i]}`);
      assert.ok(Math.abs(hc.weight[i]! - 0.2) < 0.05, `prior 0.2: ${hc.weight[i]}`);
      assert.equal(hc.need[i], ha.need[i], 'nothing else moves');
    }
  });
});
