import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { toDsjson } from '../../src/learner/dsjson.js';
import type { LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures } from '../../src/learner/features.js';
import { deserializeWeights, forward, GREEDY_STEPS, greedySplit, initialWeights, LEGACY_OUTPUTS, marginal, predict, response, serializeWeights, type Heads } from '../../src/learner/model.js';
import { candidateSet, candidatesAround, candidatesWith, decide, decideAround, explorationProbs, greedyBudgets, optionsFor, probesFor, randomSplit, SAFE_START_EPSILON, signedPerturbation, withCandidate, type ExploreOptions } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { expectedQuality, loadWorld, oracleBudgets, sampleContext, truthOf } from '../../src/learner/sim/world.js';

const heads = (need: number[], weight: number[], shape = need.map(() => 1e6)): Heads => ({
  need: Float64Array.from(need),
  weight: Float64Array.from(weight),
  shape: Float64Array.from(shape),
});

describe('feature encoding', () => {
  const enc = compileFeatures([
    { name: 'task', type: 'categorical', values: ['qa', 'code'] },
    { name: 'user', type: 'categorical', hashBuckets: 4 },
    { name: 'messages', type: 'numeric', transform: 'log', mean: 1, std: 2 },
    { name: 'flag', type: 'numeric' },
    { name: 'document', type: 'tokens' },
  ]);

  it('one-hot, unknown slot, hashing, log + standardisation, missing indicators, token counts', () => {
    assert.equal(enc.dim, 1 + 3 + 4 + 2 + 2 + 2);
    const v = enc.encode({ task: 'code', user: 'alice', messages: Math.E - 1, flag: true, documentTokens: 99 });
    assert.equal(v[0], 1, 'bias');
    assert.deepEqual([...v.slice(1, 4)], [0, 1, 0]);
    assert.equal(v.slice(4, 8).reduce((s, x) => s + x, 0), 1, 'one hashed bucket');
    assert.ok(Math.abs(v[8]! - 0) < 1e-6, '(ln(e) − 1) / 2 = 0');
    assert.equal(v[9], 0);
    assert.equal(v[10], 1, 'boolean → 1');
    assert.ok(Math.abs(v[12]! - Math.log(100)) < 1e-5, 'tokens are log1p-transformed');
    const missing = enc.encode({ task: 'unknown-task', messages: 'not a number' });
    assert.deepEqual([...missing.slice(1, 4)], [0, 0, 1], 'unknown value → the unknown slot');
    assert.equal(missing.slice(4, 8).reduce((s, x) => s + x, 0), 0, 'missing hashed feature → all zero');
    assert.equal(missing[9], 1, 'missing indicator');
    assert.equal(missing[13], 1);
  });

  it('has a signature that changes with the declaration', () => {
    assert.notEqual(compileFeatures([{ name: 'a', type: 'numeric' }]).signature, compileFeatures([{ name: 'b', type: 'numeric' }]).signature);
    assert.equal(compileFeatures([]).dim, 1);
  });
});

describe('reward model', () => {
  it('round-trips weights through base64', () => {
    const w = initialWeights(7, 3, 9000, mulberry32(5));
    const back = deserializeWeights(serializeWeights(w));
    assert.deepEqual([...back.w1], [...w.w1]);
    assert.deepEqual([...back.b2], [...w.b2]);
    assert.throws(() => deserializeWeights({ ...serializeWeights(w), b1: Buffer.from(new Float32Array(2).buffer).toString('base64') }), /b1/);
  });

  it('loads a version trained with 3 outputs per agent (no threshold factor) with the same predictions', () => {
    const w = initialWeights(5, 3, 6000, mulberry32(3));
    const n = 3;
    // The legacy layout: need, weight and shape rows only.
    const legacy = { ...w, w2: w.w2.slice(0, LEGACY_OUTPUTS * n * w.hidden), w3: w.w3.slice(0, LEGACY_OUTPUTS * n * w.inputDim), b2: w.b2.slice(0, LEGACY_OUTPUTS * n) };
    const x = Float32Array.from([1, 0.3, -1.2, 2, 0]);
    const before = forward(legacy, x);
    const after = forward(deserializeWeights(serializeWeights(legacy)), x);
    for (const b of [[0, 0, 0], [100, 2000, 50], [3000, 3000, 3000]]) {
      const exact = b.reduce((q, v, i) => q * (1 - before.weight[i]! * Math.pow(1 + v / (before.shape[i]! * before.need[i]!), -before.shape[i]!)), 1);
      assert.ok(Math.abs(predict(after, b) - exact) < 1e-6, `${predict(after, b)} vs ${exact}`);
      assert.ok(Math.abs(predict(before, b) - exact) < 1e-6);
    }
  });

  it('a threshold factor: 1 − step at 0 tokens, ≈ 1 past its location; the greedy split looks ahead across it', () => {
    // Agent 0: a step (weight 0.8) at 3,000 tokens; agents 1 and 2: gentle saturating curves that each chunk's gain favours.
    const h: Heads = {
      need: Float64Array.from([100, 2500, 2500]),
      weight: Float64Array.from([0, 0.3, 0.3]),
      shape: Float64Array.from([1e6, 1e6, 1e6]),
      step: Float64Array.from([0.8, 0, 0]),
      loc: Float64Array.from([3000, 1, 1]),
      steep: Float64Array.from([20, 1, 1]),
      stepNorm: Float64Array.from([1 + Math.exp(-20), 1, 1]),
      maxStep: 0.8,
    };
    assert.ok(Math.abs(response(h, 0, 0) - 0.2) < 1e-6);
    assert.ok(response(h, 0, 4500) > 0.99);
    const mins = [0, 0, 0];
    const caps = [1e6, 1e6, 1e6];
    const g = greedySplit(h, mins, caps, 6000);
    assert.ok(g[0]! >= 3000, `the step agent gets past its threshold: ${g}`);
    assert.equal(g.reduce((a, b) => a + b, 0), 6000);
    // Within 1 % of the best split on a 100-token grid.
    let best = 0;
    for (let a = 0; a <= 6000; a += 100) for (let b = 0; a + b <= 6000; b += 100) best = Math.max(best, predict(h, [a, b, 6000 - a - b]));
    assert.ok(predict(h, g) >= best * 0.99, `${predict(h, g)} vs ${best}`);
    // Without look-ahead (the concave path), one chunk's gain never shows the step: it would starve agent 0.
    const flat = marginal(h, mins.slice(), caps, 6000, Math.floor(6000 / GREEDY_STEPS));
    assert.ok(predict(h, flat) < predict(h, g) - 0.1, `one-chunk marginal allocation ${flat} is worse`);
  });

  it('greedy split matches the exact optimum of an exponential world (within 0.5 %: chunked marginal allocation)', () => {
    const world = loadWorld('support-basic');
    const rng = mulberry32(9);
    const mins = world.agents.map((a) => a.minTokens);
    const caps = world.agents.map((a) => a.maxTokens);
    for (let i = 0; i < 50; i++) {
      const x = sampleContext(world, rng);
      const t = truthOf(world, 0, x);
      const g = greedySplit(heads(t.need, t.weight), mins, caps, world.totalTokens);
      const sum = g.reduce((s, v) => s + v, 0);
      assert.ok(Math.abs(sum - world.totalTokens) < 1e-6);
      g.forEach((v, j) => assert.ok(v >= mins[j]! - 1e-9 && v <= caps[j]! + 1e-9));
      const qg = expectedQuality(world, 0, x, g);
      const qo = expectedQuality(world, 0, x, oracleBudgets(world, 0, x, world.totalTokens));
      assert.ok(qg >= qo * 0.995, `greedy ${qg} vs oracle ${qo}`);
    }
  });

  it('proximity-scaled greedy split: within bounds, sums to the target, as good as one fine pass (fast-check)', () => {
    const agent = fc.record({
      need: fc.double({ min: 20, max: 8000, noNaN: true }),
      weight: fc.double({ min: 0.01, max: 0.99, noNaN: true }),
      shape: fc.double({ min: 1, max: 12, noNaN: true }),
      min: fc.integer({ min: 0, max: 800 }),
      room: fc.integer({ min: 0, max: 12_000 }),
    });
    fc.assert(
      fc.property(fc.array(agent, { minLength: 1, maxLength: 9 }), fc.integer({ min: 0, max: 60_000 }), (as, total) => {
        const h: Heads = { need: Float64Array.from(as, (a) => a.need), weight: Float64Array.from(as, (a) => a.weight), shape: Float64Array.from(as, (a) => a.shape) };
        const mins = as.map((a) => a.min);
        const caps = as.map((a) => a.min + a.room);
        const g = greedySplit(h, mins, caps, total);
        const minSum = mins.reduce((s, v) => s + v, 0);
        const target = Math.floor(Math.min(total, caps.reduce((s, v) => s + v, 0)));
        const sum = g.reduce((s, v) => s + v, 0);
        assert.equal(sum, Math.max(target, minSum));
        g.forEach((v, j) => assert.ok(Number.isInteger(v) && v >= mins[j]! && v <= Math.max(mins[j]!, caps[j]!)));
        if (target <= minSum) return;
        // The reference: one fine pass of marginal allocation from the minimums.
        const fine = marginal(h, mins.slice(), caps, target, Math.max(1, Math.floor((target - minSum) / GREEDY_STEPS)));
        assert.ok(predict(h, g) >= predict(h, fine) * (1 - 2e-3), `scaled ${predict(h, g)} vs fine ${predict(h, fine)}`);
      }),
      { numRuns: 400, seed: 11 },
    );
  });

  it('predicts a product of saturating responses', () => {
    const h = heads([1000, 500], [1, 0.5]);
    const q = predict(h, [1000, 500]);
    assert.ok(Math.abs(q - (1 - Math.exp(-1)) * (1 - 0.5 * Math.exp(-1))) < 1e-5);
    const hyper = heads([1000], [1], [1]);
    assert.ok(Math.abs(predict(hyper, [1000]) - 0.5) < 1e-12, 'κ = 1: 1 − need/(b + need)');
  });
});

describe('exploration', () => {
  const agents = [
    { min: 100, cap: 4000 },
    { min: 200, cap: 8000 },
    { min: 0, cap: 1500 },
  ];
  const h = heads([2000, 3000, 300], [0.9, 0.8, 0.2]);

  for (const explorer of ['squarecb', 'epsilon'] as const) {
    it(`${explorer}: valid candidates, positive probabilities that sum to 1, sampled at those rates`, () => {
      const opts: ExploreOptions = { explorer, epsilon: 0.2, gamma: 200, perturbation: 0.5 };
      const cands = candidateSet(h, agents, 9000, 0.5);
      assert.deepEqual(cands[0], greedyBudgets(h, agents, 9000));
      assert.equal(new Set(cands.map((c) => c.join(','))).size, cands.length, 'no duplicate actions');
      const p = explorationProbs(h, cands, opts);
      assert.ok(Math.abs(p.reduce((s, v) => s + v, 0) - 1) < 1e-12);
      assert.ok(p.every((v) => v > 0));
      const rng = mulberry32(1);
      const counts = new Array<number>(cands.length).fill(0);
      const N = 20_000;
      for (let i = 0; i < N; i++) {
        const d = decide(h, agents, 9000, opts, rng);
        counts[d.chosen]!++;
        assert.deepEqual(d.budgets, d.candidates[d.chosen]);
      }
      counts.forEach((c, k) => {
        const sd = Math.sqrt(N * p[k]! * (1 - p[k]!));
        assert.ok(Math.abs(c - N * p[k]!) <= 5 * sd + 1, `candidate ${k}: ${c} draws for p=${p[k]}`);
      });
    });
  }

  it('the exploration budget ε bounds the non-greedy mass however flat the predictions, and decays as √(from/v)', () => {
    const h = heads([1000, 1000, 1000, 1000], [0.01, 0.01, 0.01, 0.01]); // nearly flat: every candidate predicts the same
    const agents4 = [0, 1, 2, 3].map(() => ({ min: 0, cap: 1e6 }));
    const cands = candidateSet(h, agents4, 8000, 0.5);
    const base: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 };
    const plain = explorationProbs(h, cands, base);
    assert.ok(plain[0]! < 0.2, 'plain SquareCB spreads almost evenly over flat predictions');
    for (const budget of [0.3, 0.1, 0.02]) {
      const p = explorationProbs(h, cands, { ...base, budget });
      const rest = p.slice(1).reduce((a, b) => a + b, 0);
      assert.ok(rest < budget && rest > budget * 0.5, `budget ${budget}: non-greedy mass ${rest}`);
      assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    }
    assert.equal(optionsFor({ ...base, budget: 0.3, decayFrom: 4 }, 3).budget, 0.3);
    assert.ok(Math.abs(optionsFor({ ...base, budget: 0.3, decayFrom: 4 }, 16).budget! - 0.15) < 1e-12);
    assert.equal(optionsFor({ ...base, budget: 0.3 }, 16).budget, 0.3, 'no decay without decayFrom');
  });

  it('up-only exploration: n + 2 candidates, rebuilt from the greedy split and the signed δ', () => {
    const opts: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, upOnly: true };
    const d = decide(h, agents, 9000, opts, mulberry32(5));
    assert.ok(d.candidates.length <= agents.length + 2);
    assert.ok(d.candidates.length < candidateSet(h, agents, 9000, 0.5).length);
    assert.deepEqual(candidatesAround(d.candidates[0]!, agents, 9000, signedPerturbation(opts)), d.candidates);
  });

  it('property: any heads and bounds give valid budgets and a distribution (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ min: fc.integer({ min: 0, max: 2000 }), extra: fc.integer({ min: 0, max: 10000 }), need: fc.double({ min: 1, max: 50000, noNaN: true }), w: fc.double({ min: 0.001, max: 0.999, noNaN: true }), k: fc.double({ min: 1, max: 1000, noNaN: true }) }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 40000 }),
        (rows, extraTotal) => {
          const ag = rows.map((r) => ({ min: r.min, cap: r.min + r.extra }));
          const total = rows.reduce((s, r) => s + r.min, 0) + extraTotal;
          const hh = heads(rows.map((r) => r.need), rows.map((r) => r.w), rows.map((r) => r.k));
          const d = decide(hh, ag, total, { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 }, mulberry32(2));
          assert.ok(Math.abs(d.probs.reduce((s, v) => s + v, 0) - 1) < 1e-9);
          for (const c of d.candidates) {
            assert.ok(c.reduce((s, v) => s + v, 0) <= total);
            c.forEach((v, i) => assert.ok(Number.isInteger(v) && v >= ag[i]!.min && v <= ag[i]!.cap));
          }
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });
});

describe('DSJSON export', () => {
  it('writes the chosen action first with its probability and the cost as −reward', () => {
    const ev: LoggedEvent = { id: 'd1', t: 0, s: 'learn', f: { task: 'qa', n: null }, T: 100, b: { a: 60, b: 40 }, q: 0.8, c: 0.1, C: [[50, 50], [60, 40]], P: [0.7, 0.3], k: 1, m: 4 };
    const line = JSON.parse(toDsjson(ev, ['a', 'b'], 1)) as Record<string, unknown>;
    assert.equal(line._label_Action, 2);
    assert.equal(line._label_probability, 0.3);
    assert.ok(Math.abs((line._label_cost as number) + 0.7) < 1e-12);
    assert.deepEqual(line.a, [2, 1]);
    assert.deepEqual(line.p, [0.3, 0.7]);
    assert.deepEqual((line.c as { _multi: unknown[] })._multi[1], { share: { a: 0.6, b: 0.4 } });
    assert.equal((line.c as Record<string, unknown>).n, undefined);
    const { C: _C, P: _P, k: _k, ...certain } = ev;
    const det = JSON.parse(toDsjson(certain, ['a', 'b'])) as { p: number[]; a: number[] };
    assert.deepEqual(det.p, [1]);
    assert.deepEqual(det.a, [1]);
  });
});

describe('candidate mixing and the safe start', () => {
  const agents = [
    { min: 100, cap: 5000 },
    { min: 50, cap: 8000 },
    { min: 0, cap: 3000 },
  ];
  const opts: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 };

  it('mixes a split in with probability `share`, rebuildable from the log, with frequencies matching the logged probabilities', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.integer({ min: 2000, max: 12000 }), fc.double({ min: 0.01, max: 0.5, noNaN: true }), (seed, total, share) => {
        const rng = mulberry32(seed);
        const h = heads([800 + rng() * 2000, 300 + rng() * 3000, 100 + rng() * 900], [0.3 + rng() * 0.6, 0.3 + rng() * 0.6, 0.1 + rng() * 0.5]);
        const base = decide(h, agents, total, opts, rng);
        const extra = greedyBudgets(heads([3000, 100, 100], [0.9, 0.1, 0.1]), agents, total);
        const mixed = withCandidate(base, extra, share, rng);
        assert.ok(Math.abs(mixed.probs.reduce((s, p) => s + p, 0) - 1) < 1e-9);
        const at = mixed.candidates.findIndex((c) => c.every((v, i) => v === extra[i]));
        assert.ok(at >= 0 && mixed.probs[at]! >= share - 1e-12);
        assert.deepEqual(mixed.candidates, candidatesWith(candidatesAround(base.candidates[0]!, agents, total, signedPerturbation(opts)), extra));
        assert.deepEqual(mixed.budgets, mixed.candidates[mixed.chosen]);
      }),
      { numRuns: 100 },
    );
    // Frequencies: one fixed decision drawn many times.
    const rng = mulberry32(5);
    const h = heads([1500, 2000, 400], [0.8, 0.6, 0.3]);
    const extra = [4000, 5000, 1000];
    const counts = new Map<number, number>();
    let probs: number[] = [];
    const N = 20000;
    for (let i = 0; i < N; i++) {
      const d = withCandidate(decide(h, agents, 10000, opts, rng), extra, 0.1, rng);
      probs = d.probs;
      counts.set(d.chosen, (counts.get(d.chosen) ?? 0) + 1);
    }
    probs.forEach((p, k) => assert.ok(Math.abs((counts.get(k) ?? 0) / N - p) < 4 * Math.sqrt((p * (1 - p)) / N) + 1e-3, `candidate ${k}: ${(counts.get(k) ?? 0) / N} vs ${p}`));
  });

  it('the safe start serves the given split as candidate 0 with probability 1 − SAFE_START_EPSILON + its share', () => {
    const base = [3000, 5000, 2000];
    const d = decideAround(base, agents, 10000, opts, mulberry32(1));
    assert.deepEqual(d.candidates[0], base);
    assert.ok(Math.abs(d.probs[0]! - (1 - SAFE_START_EPSILON + SAFE_START_EPSILON / d.candidates.length)) < 1e-12);
    assert.ok(Math.abs(d.probs.reduce((s, p) => s + p, 0) - 1) < 1e-12);
  });
});

describe('sparse deep probes', () => {
  const agents = [
    { min: 0, cap: 8000 },
    { min: 0, cap: 8000 },
    { min: 0, cap: 8000 },
  ];
  const opts: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: 0.3, probe: 0.3, probeDepth: 1.5, probeStop: 0.25 };

  it('each probe is in the logged candidate set with exactly probe/n on top of the (1 − mass)-scaled policy', () => {
    const h = heads([1000, 1500, 800], [0.3, 0.25, 0.2]);
    const d = decide(h, agents, 9000, opts, mulberry32(3));
    const plainC = candidateSet(h, agents, 9000, 0.5);
    const plainP = explorationProbs(h, plainC, opts);
    const pr = probesFor(h, plainC[0]!, agents, opts);
    assert.equal(pr.agents.length, 3, 'every agent is probed while the model predicts a small loss');
    assert.deepEqual(d.candidates.slice(0, plainC.length), plainC, 'the policy\'s candidates come first, unchanged');
    const each = 0.3 / 3;
    const mass = each * pr.splits.length;
    for (const [j, b] of pr.splits.entries()) {
      const i = pr.agents[j]!;
      assert.ok(Math.abs(b[i]! - Math.round(plainC[0]![i]! * Math.exp(-1.5))) <= 1, `agent ${i} cut to e^-1.5 of its greedy budget`);
      assert.equal(b.reduce((s, v) => s + v, 0), plainC[0]!.reduce((s, v) => s + v, 0), 'the freed tokens go to the others');
      const k = d.candidates.findIndex((c) => c.join() === b.join());
      assert.ok(k >= 0, 'the probe is a logged candidate');
      const base = k < plainP.length ? plainP[k]! * (1 - mass) : 0;
      assert.ok(Math.abs(d.probs[k]! - (base + each)) < 1e-12, 'its propensity is exact');
    }
    assert.ok(Math.abs(d.probs.reduce((s, v) => s + v, 0) - 1) < 1e-12);
    // Sampled at the logged rates.
    const rng = mulberry32(9);
    const N = 20_000;
    const counts = new Array<number>(d.candidates.length).fill(0);
    for (let t = 0; t < N; t++) {
      const e = decide(h, agents, 9000, opts, rng);
      assert.deepEqual(e.candidates, d.candidates);
      counts[e.chosen]!++;
    }
    counts.forEach((c, k) => {
      const sd = Math.sqrt(N * d.probs[k]! * (1 - d.probs[k]!));
      assert.ok(Math.abs(c - N * d.probs[k]!) <= 5 * sd + 1, `candidate ${k}: ${c} draws for p=${d.probs[k]}`);
    });
  });

  it('an agent whose probes the model has learned to be costly (a large predicted loss) is not probed', () => {
    // Agent 1 behaves like a hard floor: a steep threshold near its greedy budget, so a deep cut loses most of the reward.
    const soft = heads([1000, 1000, 1000], [0.3, 0.3, 0.3]);
    const floor: Heads = { ...soft, step: Float64Array.from([0, 0.95, 0]), loc: Float64Array.from([0, 2000, 0]), steep: Float64Array.from([0, 20, 0]), stepNorm: Float64Array.from([1, 1, 1]), maxStep: 0.95 };
    const g = greedyBudgets(floor, agents, 9000);
    assert.deepEqual(probesFor(soft, greedyBudgets(soft, agents, 9000), agents, opts).agents, [0, 1, 2]);
    assert.deepEqual(probesFor(floor, g, agents, opts).agents, [0, 2]);
    const d = decide(floor, agents, 9000, opts, mulberry32(1));
    assert.ok(!d.candidates.some((c) => c[1]! < g[1]! * Math.exp(-1)), 'no candidate starves agent 1');
  });

  it('off (probe 0 or absent): the decision is exactly the plain policy\'s, draw for draw', () => {
    const h = heads([1000, 1500, 800], [0.3, 0.25, 0.2]);
    const { probe: _p, ...plain } = opts;
    const a = decide(h, agents, 9000, plain, mulberry32(4));
    const b = decide(h, agents, 9000, { ...opts, probe: 0 }, mulberry32(4));
    assert.deepEqual(a, b);
    assert.deepEqual(candidatesAround(a.candidates[0]!, agents, 9000, 0.5), a.candidates);
  });

  it('random probes: the drawn split is a logged candidate with probability exactly `probe`; the share decays as decayFrom / v', () => {
    const h = heads([1000, 1500, 800], [0.3, 0.25, 0.2]);
    const o: ExploreOptions = { ...opts, probe: 0.2, probeKind: 'random', probeStop: 1 };
    const rng = mulberry32(11);
    const d = decide(h, agents, 9000, o, rng);
    const again = mulberry32(11);
    const r = randomSplit(agents, 9000, again);
    assert.equal(r.reduce((s, v) => s + v, 0), 9000);
    const plainC = candidateSet(h, agents, 9000, 0.5);
    const plainP = explorationProbs(h, plainC, o);
    const k = d.candidates.findIndex((c) => c.join() === r.join());
    assert.ok(k >= plainC.length, 'appended after the policy\'s candidates');
    assert.ok(Math.abs(d.probs[k]! - 0.2) < 1e-12);
    plainP.forEach((p, j) => assert.ok(Math.abs(d.probs[j]! - 0.8 * p) < 1e-12));
    assert.equal(optionsFor({ ...o, decayFrom: 2 }, 8).probe, 0.05);
    assert.equal(optionsFor({ ...o, decayFrom: 2, probeDecay: false }, 8).probe, 0.2);
  });
});
