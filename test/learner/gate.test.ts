import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures, fitScaling } from '../../src/learner/features.js';
import { DEFAULT_GATE, describeRule, gateVerdict, lowerBound, NORMAL_GATE, retireVerdict, type GateRule } from '../../src/learner/gate.js';
import { forward, initialWeights, OUTPUTS, predict, type ModelWeights } from '../../src/learner/model.js';
import { importanceWeight } from '../../src/learner/ope-service.js';
import { CANDIDATE_SHARE, decide, decideAround, greedyBudgets, withCandidate } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { namedWorld, uniformSplitOf } from '../../src/learner/sim/family.js';
import { policyAgents } from '../../src/learner/sim/loop.js';
import { loadWorld } from '../../src/learner/sim/world.js';
import { trainModel } from '../../src/learner/trainer.js';

const world = namedWorld(loadWorld('support-basic'));
const names = world.agents.map((a) => a.name);
const agents = policyAgents(world);
const T = world.totalTokens;
const uniform = uniformSplitOf(world, T);
const specs = world.declaration.features;
const explore = { explorer: 'epsilon' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5 };

type Model = { weights: ModelWeights; encoder: ReturnType<typeof compileFeatures> };
const split = (m: Model, f: LoggedEvent['f']) => greedyBudgets(forward(m.weights, m.encoder.encode(f)), agents, T);

/** Safe-start decisions (the default strategy, uniform, explored around) with `candidate`'s split mixed in, and their outcomes. */
function log(n: number, seed: number, candidate?: Model): LoggedEvent[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, (_, t) => {
    const x = world.sample(rng);
    const f = world.features(x);
    let dec = decideAround(uniform, agents, T, explore, rng, uniform);
    if (candidate) dec = withCandidate(dec, split(candidate, f), CANDIDATE_SHARE, rng);
    const q = world.outcome(0, x, dec.budgets, rng).quality;
    return { id: `${seed}-${t}`, t, s: 'learn', f, T, b: Object.fromEntries(names.map((a, i) => [a, dec.budgets[i]!])), q, c: null, C: dec.candidates, P: dec.probs, k: dec.chosen };
  });
}

/** A model that puts every free token on the retriever (uncapped) and starves the rest: far worse than uniform. */
function starving(): Model {
  const encoder = compileFeatures(specs);
  const w = initialWeights(encoder.dim, names.length, T, mulberry32(1));
  const b2 = Float32Array.from(w.b2);
  for (let i = 0; i < names.length; i++) {
    b2[i] = i === 1 ? 8 : -8; // need: huge for the retriever, tiny for the others
    b2[names.length + i] = i === 1 ? 8 : -8; // weight: only the retriever matters
  }
  return { weights: { ...w, w2: new Float32Array(OUTPUTS * names.length * w.hidden), b2 }, encoder };
}

const gate = (events: LoggedEvent[], c: Model) =>
  gateVerdict({ events, agents: names, costWeight: 0, candidate: c, candidateSplit: (e) => split(c, e.f), defaultSplit: () => uniform });

describe('activation gate', () => {
  it('refuses a model worse than the default strategy, saying so', () => {
    const bad = starving();
    const events = log(1500, 11, bad);
    const v = gate(events, bad);
    assert.equal(v.pass, false, v.reason);
    const d = v.comparisons.find((c) => c.against === 'default')!;
    assert.ok(d.lo < -DEFAULT_GATE.delta && d.diff < -0.05, `Δ ${d.diff}, lower bound ${d.lo}`);
    assert.match(v.reason, /possibly worse than default/);
    // Its split had exact support on every decision (it was mixed in).
    assert.ok(events.every((e) => importanceWeight(e, names, split(bad, e.f), 0.005).supported));
  });

  it('passes a model trained on the default strategy’s logs (declared without mean/std) that beats it', async () => {
    const { tf } = await loadTf();
    const train = log(3000, 12);
    const encoder = compileFeatures(specs, fitScaling(specs, train.map((e) => e.f)));
    const init = initialWeights(encoder.dim, names.length, T, mulberry32(2));
    const { weights } = await trainModel(tf, buildTrainingData([...train].reverse(), encoder, names, { costWeight: 0 }), init, { seed: 1, yieldToEventLoop: false, epochs: 20 });
    const good = { weights, encoder };
    const v = gate(log(1500, 13, good), good);
    assert.equal(v.pass, true, v.reason);
    // And the gate's estimate of the gain agrees with the truth on fresh requests.
    const rng = mulberry32(14);
    let gain = 0;
    for (let i = 0; i < 2000; i++) {
      const x = world.sample(rng);
      gain += (world.expected(0, x, split(good, world.features(x))) - world.expected(0, x, uniform)) / 2000;
    }
    const d = v.comparisons.find((c) => c.against === 'default')!;
    assert.ok(gain > 0.02, `true gain ${gain}`);
    assert.ok(Math.abs(d.diff - gain) < 3 * (d.diff - d.lo) / DEFAULT_GATE.z + 0.01, `estimated ${d.diff} vs true ${gain}`);
  });

  it('refuses for lack of support when the logs never played the candidate (a shadow strategy: another strategy served)', () => {
    const good = starving();
    // Logged by a deterministic strategy (the default, uniform): what a pipeline logs while a learned strategy only runs in shadow.
    const rng = mulberry32(5);
    const events: LoggedEvent[] = Array.from({ length: 600 }, (_, t) => {
      const x = world.sample(rng);
      const q = world.outcome(0, x, uniform, rng).quality;
      return { id: `s-${t}`, t, s: 'static', f: world.features(x), T, b: Object.fromEntries(names.map((a, i) => [a, uniform[i]!])), q, c: null };
    });
    const v = gate(events, good);
    assert.equal(v.pass, false);
    assert.match(v.reason, /too little support: the candidate's split was played on 0 of 600 decisions/);
    // The same candidate once its split is mixed into served decisions (the strategy live, e.g. as an experiment's variant) is judged on its value.
    const live = gate(log(1500, 12, good), good);
    assert.doesNotMatch(live.reason, /too little support/);
    assert.ok(live.comparisons.length > 0);
  });

  it('refuses on too few decisions and compares with the serving version when one serves', () => {
    const bad = starving();
    const few = gate(log(100, 15, bad), bad);
    assert.equal(few.pass, false);
    assert.match(few.reason, /only 100 decisions/);
    const events = log(600, 16, bad);
    const v = gateVerdict({ events, agents: names, costWeight: 0, candidate: bad, candidateSplit: (e) => split(bad, e.f), serving: { version: 3, split: () => uniform }, defaultSplit: () => uniform });
    assert.deepEqual(v.comparisons.map((c) => c.against), ['serving', 'default']);
    assert.match(v.reason, /serving version 3/);
  });
});

/**
 * Skewed, bimodal rewards: two agents, the default strategy (50/50) served on 93 % of decisions with reward ≈ 0.95,
 * the candidate's split (80/20) on 7 % with a hard failure (reward 0) on 10 % of its requests, else 1: it is worse
 * by 0.05, beyond δ = 0.02. The reward model predicts ≈ 1 for both splits (no failures), as a model that has not
 * seen the failures would.
 */
describe('activation gate under skewed, bimodal rewards', () => {
  const two = ['a', 'b'];
  const uni = [50, 50];
  const cand = [80, 20];
  const enc = compileFeatures([]);
  const w0 = initialWeights(enc.dim, 2, 100, mulberry32(1));
  const b2 = Float32Array.from(w0.b2);
  b2[2] = b2[3] = -8; // the saturating parts do not matter: r̂ ≈ 1 whatever the split
  const model = { weights: { ...w0, w2: new Float32Array(w0.w2.length), b2 }, encoder: enc };
  const ev = (t: number, k: 0 | 1, q: number): LoggedEvent => ({ id: String(t), t, s: 'l', f: {}, T: 100, b: { a: [uni, cand][k]![0]!, b: [uni, cand][k]![1]! }, q, c: null, C: [uni, cand], P: [0.93, 0.07], k });
  const input = (events: LoggedEvent[]) => ({ events, agents: two, costWeight: 0, candidate: model, candidateSplit: () => cand, defaultSplit: () => uni });
  /** 600 decisions, the candidate played on every 14th (42 plays), `failures` of them failing; the default's rewards 0.95 ± 0.03. */
  const sample = (failures: number) =>
    Array.from({ length: 600 }, (_, t) => (t % 14 === 0 && t / 14 < 42 ? ev(t, 1, t / 14 < failures ? 0 : 1) : ev(t, 0, 0.95 + 0.03 * Math.sin(t))));

  it('the normal bound admits a worse version on a sample with one failure in 42 plays; the bootstrap-t bound refuses it', () => {
    const h = forward(model.weights, enc.encode({}));
    assert.ok(predict(h, uni) > 0.95 && predict(h, cand) > 0.95);
    const events = sample(1);
    const old = gateVerdict(input(events), NORMAL_GATE);
    assert.equal(old.pass, true, `the normal bound: ${old.reason}`);
    const now = gateVerdict(input(events), DEFAULT_GATE);
    assert.equal(now.pass, false, now.reason);
    assert.match(now.reason, /possibly worse than default: Δ 0\.02\d+, lower bound -0\.\d+ \(δ 0\.02, 600 decisions, look 1 of 1, 95\.0 % bootstrap-t bound\)/);
    // Same data, same level: only the interval differs.
    const d = Float64Array.from(events.map((e) => {
      const r = e.q;
      const qh = predict(h, e.k === 1 ? cand : uni);
      return predict(h, cand) - predict(h, uni) + (e.k === 1 ? (r - qh) / 0.07 : -(r - qh) / 0.93);
    }));
    const normal = lowerBound(d, 0.05, 'normal');
    const boot = lowerBound(d, 0.05, 'bootstrap-t');
    assert.ok(normal.lo >= -0.02 && boot.lo < -0.02, `normal ${normal.lo}, bootstrap-t ${boot.lo}`);
    assert.ok(boot.lo < normal.lo - 0.05, `bootstrap-t ${boot.lo} vs normal ${normal.lo}`);
  });

  it('still passes the same candidate when it does not fail (not worse), and refuses it under both bounds when failures show', () => {
    assert.equal(gateVerdict(input(sample(0)), DEFAULT_GATE).pass, true);
    assert.equal(gateVerdict(input(sample(0)), NORMAL_GATE).pass, true);
    assert.equal(gateVerdict(input(sample(3)), DEFAULT_GATE).pass, false);
    assert.equal(gateVerdict(input(sample(3)), NORMAL_GATE).pass, false);
  });

  it('over repeated samples of the worse candidate, admits it less often than the normal bound and at most at its level', () => {
    const rng = mulberry32(5);
    let normal = 0;
    let boot = 0;
    const trials = 120;
    for (let trial = 0; trial < trials; trial++) {
      const events = Array.from({ length: 600 }, (_, t) => (rng() < 0.07 ? ev(t, 1, rng() < 0.1 ? 0 : 1) : ev(t, 0, 0.95 + 0.03 * (2 * rng() - 1))));
      if (gateVerdict(input(events), NORMAL_GATE).pass) normal++;
      if (gateVerdict(input(events), { ...DEFAULT_GATE, resamples: 1000 }).pass) boot++;
    }
    assert.ok(boot <= normal, `bootstrap-t admitted ${boot}, normal ${normal} of ${trials}`);
    assert.ok(boot / trials <= 0.05, `bootstrap-t admitted ${boot} of ${trials}`);
  });

  it('with looks, an inconclusive candidate whose estimate is not below −δ waits; the last look decides', () => {
    const rule = { ...DEFAULT_GATE, looks: 3 };
    const first = gateVerdict(input(sample(1)), rule, 1);
    assert.equal(first.pass, false);
    assert.equal(first.wait, true, first.reason);
    assert.match(first.reason, /not yet shown not worse .* look 1 of 3, 98\.3 % bootstrap-t bound\); judged again on more decisions/);
    const last = gateVerdict(input(sample(1)), rule, 3);
    assert.equal(last.wait, undefined);
    assert.equal(last.pass, false);
    // Clearly worse (estimate below −δ): refused at once.
    assert.equal(gateVerdict(input(sample(4)), rule, 1).wait, undefined);
  });

  it('after a change, retires a serving version estimated worse than the default by more than δ, not one merely unproven', () => {
    const worse = retireVerdict(input(sample(4)));
    assert.equal(worse.retire, true, worse.verdict.reason);
    assert.ok(worse.verdict.comparisons[0]!.diff < -0.02);
    assert.equal(retireVerdict(input(sample(0))).retire, false);
    // One failure: refused as a candidate (not shown not worse), but its estimate is above −δ: it keeps serving.
    const unproven = retireVerdict(input(sample(1)));
    assert.equal(unproven.verdict.pass, false);
    assert.equal(unproven.retire, false);
  });
});

/**
 * Evidence along a lineage of retrains: while version S serves, the candidate's comparison with the default strategy
 * is Δ(candidate, S) on the candidate's decisions + Δ(S, default) on every decision S never saw.
 */
describe('activation gate along a lineage', () => {
  /** Budgets as they act after a change of roles: agent k's budget acts as agent roles[k]'s did. */
  const permute = (b: readonly number[], roles: readonly number[]) => {
    const out = b.map(() => 0);
    b.forEach((v, k) => (out[roles[k]!] = v));
    return out;
  };
  /** Decisions served by `serving` (its exploring policy), a 5 % control arm (the default, uniform) and `candidate`'s split mixed in. */
  function served(n: number, seed: number, serving: Model, candidate?: Model, from = 0, roles?: readonly number[]): LoggedEvent[] {
    const rng = mulberry32(seed);
    return Array.from({ length: n }, (_, i) => {
      const t = from + i;
      const x = world.sample(rng);
      const f = world.features(x);
      let dec = decide(forward(serving.weights, serving.encoder.encode(f)), agents, T, explore, rng, uniform);
      if (candidate) dec = withCandidate(dec, split(candidate, f), CANDIDATE_SHARE, rng);
      dec = withCandidate(dec, uniform, 0.05, rng);
      // `roles`: the agents have changed roles (agent k's budget acts as agent roles[k]'s did).
      const acting = roles ? permute(dec.budgets, roles) : dec.budgets;
      const q = world.outcome(0, x, acting, rng).quality;
      return { id: `${seed}-${t}`, t, s: 'learn', f, T, b: Object.fromEntries(names.map((a, i) => [a, dec.budgets[i]!])), q, c: null, C: dec.candidates, P: dec.probs, k: dec.chosen };
    });
  }
  const judge = (events: LoggedEvent[], c: Model, s: Model, evidence: LoggedEvent[] | undefined, rule = DEFAULT_GATE) =>
    gateVerdict(
      {
        events,
        agents: names,
        costWeight: 0,
        candidate: c,
        candidateSplit: (e) => split(c, e.f),
        serving: { version: 4, split: (e) => split(s, e.f), ...(evidence ? { evidence: { events: evidence, model: s } } : {}) },
        defaultSplit: () => uniform,
      },
      rule,
    );
  /** A small step: the same network with its output layer moved by 2 %. */
  const step = (m: Model): Model => ({ ...m, weights: { ...m.weights, w2: m.weights.w2.map((v, i) => v * (1 + 0.02 * Math.sin(i))) } });
  let good: Model;

  it('a small step from a serving version with a long record is judged against the default on that record too (a tighter bound)', async () => {
    const { tf } = await loadTf();
    const train = log(3000, 21);
    const encoder = compileFeatures(specs, fitScaling(specs, train.map((e) => e.f)));
    const { weights } = await trainModel(tf, buildTrainingData([...train].reverse(), encoder, names, { costWeight: 0 }), initialWeights(encoder.dim, names.length, T, mulberry32(2)), { seed: 1, yieldToEventLoop: false, epochs: 20 });
    good = { weights, encoder };
    const c = step(good);
    const before = served(3000, 22, good);
    const now = served(300, 23, good, c, 3000);
    const direct = judge(now, c, good, undefined);
    const chained = judge(now, c, good, [...before, ...now]);
    const d0 = direct.comparisons.find((x) => x.against === 'default')!;
    const d1 = chained.comparisons.find((x) => x.against === 'default')!;
    assert.equal(d0.lineage, undefined);
    assert.deepEqual(d1.lineage, { version: 4, events: 3300 });
    assert.match(chained.reason, /along the lineage of version 4, on its 3300 held-out decisions/);
    // The chain's standard error is the serving version's record's, not one retrain interval's.
    assert.ok(d1.diff - d1.lo < 0.6 * (d0.diff - d0.lo), `bound width along the lineage ${d1.diff - d1.lo} vs direct ${d0.diff - d0.lo}`);
    assert.equal(chained.pass, true, chained.reason);
    // Off in the rule: the direct comparison.
    assert.equal(judge(now, c, good, [...before, ...now], { ...DEFAULT_GATE, lineage: false }).comparisons.find((x) => x.against === 'default')!.lineage, undefined);
  });

  it('still refuses a model worse than the default: a step from a serving version that is itself worse, or a bad step from a good one', () => {
    const bad = starving();
    // The serving version is worse than the default; the candidate is a small step from it (not worse than it).
    const before = served(3000, 24, bad);
    const now = served(600, 25, bad, step(bad), 3000);
    const v = judge(now, step(bad), bad, [...before, ...now]);
    assert.equal(v.pass, false, v.reason);
    const d = v.comparisons.find((x) => x.against === 'default')!;
    assert.ok(d, v.reason);
    assert.ok(d.lineage && d.lo < -DEFAULT_GATE.delta && d.diff < -0.05, `Δ ${d.diff}, lower bound ${d.lo}`);
    assert.ok(v.comparisons.find((x) => x.against === 'serving')!.lo >= -DEFAULT_GATE.delta, 'not worse than the serving version');
    // A good serving version with a long record does not carry a bad candidate.
    const after = served(600, 26, good, bad, 3000);
    const w = judge(after, bad, good, [...served(3000, 27, good), ...after]);
    assert.equal(w.pass, false, w.reason);
    assert.ok(w.comparisons.find((x) => x.against === 'default')!.lo < -DEFAULT_GATE.delta);
  });

  it('does not chain through a record that shows a change: the agents change roles after 3,000 decisions, drift detection silent', () => {
    // The agents change roles in reverse order of the serving version's mean budgets (the one it gives the most acts
    // as the one it gives the fewest, and so on): its split, good before, is now worse than the default's; the
    // candidate, a small step from it, is as bad.
    const mean = agents.map((_, k) => served(200, 30, good).reduce((s, e) => s + e.b[names[k]!]! / 200, 0));
    const rank = mean.map((_, k) => k).sort((a, b) => mean[b]! - mean[a]!);
    const roles = mean.map(() => 0);
    rank.forEach((k, r) => (roles[k] = rank[rank.length - 1 - r]!));
    const c = step(good);
    const before = served(3000, 31, good);
    const now = served(600, 32, good, c, 3000, roles);
    const truth = (b: (f: LoggedEvent['f']) => readonly number[]) => {
      const rng = mulberry32(33);
      let s = 0;
      for (let i = 0; i < 400; i++) {
        const x = world.sample(rng);
        const bb = b(world.features(x));
        s += world.expected(0, x, permute(bb, roles)) / 400;
      }
      return s;
    };
    const gap = truth((f) => split(c, f)) - truth(() => uniform);
    assert.ok(gap < -3 * DEFAULT_GATE.delta, `after the swap the candidate is worse than the default by ${gap}`);
    // The chain through the whole record averages the good past with the bad present and lets the candidate through.
    const unchecked = judge(now, c, good, [...before, ...now], { ...DEFAULT_GATE, lineageCheck: false });
    assert.equal(unchecked.pass, true, unchecked.reason);
    assert.ok(unchecked.comparisons.find((x) => x.against === 'default')!.lineage);
    // Checked (the default): the record's recent part is below its older part, so the comparison is the direct one.
    const v = judge(now, c, good, [...before, ...now]);
    assert.equal(v.pass, false, v.reason);
    const d = v.comparisons.find((x) => x.against === 'default')!;
    assert.equal(d.lineage, undefined);
    assert.ok(d.lineageChanged, v.reason);
    assert.equal(d.lineageChanged.olderEvents, 3000);
    assert.equal(d.lineageChanged.recentEvents, 600);
    assert.ok(d.lineageChanged.recent < d.lineageChanged.older - DEFAULT_GATE.delta, JSON.stringify(d.lineageChanged));
    assert.match(v.reason, /not along the lineage of version 4: its record shows a change/);
    assert.ok(d.diff < -DEFAULT_GATE.delta, `direct Δ ${d.diff}`);
  });
});

/**
 * The offset control variate (GateRule.controlVariate 'offset'): a reward model off by a common amount at every
 * split inflates the residuals the importance weights multiply; subtracting β·(w − 1), β cross-fitted, removes that
 * without bias (E[w − 1] = 0 for a split in every logged candidate set).
 */
describe('activation gate with the offset control variate', () => {
  const two = ['a', 'b'];
  const S = [60, 40];
  const C = [64, 36];
  const U = [50, 50];
  const enc = compileFeatures([]);
  const model = { weights: initialWeights(enc.dim, 2, 100, mulberry32(1)), encoder: enc };
  /** 500 decisions: the serving split 80 %, the candidate's 10 %, the default's 10 %; reward = value + noise 0.05; the model says 0.95 everywhere. */
  const sample = (vc: number, seed: number): LoggedEvent[] => {
    const rng = mulberry32(seed);
    const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
    const probs = [0.8, 0.1, 0.1];
    return Array.from({ length: 500 }, (_, t) => {
      const u = rng();
      const k = u < probs[0]! ? 0 : u < probs[0]! + probs[1]! ? 1 : 2;
      const b = [S, C, U][k]!;
      const q = [0.8, vc, 0.75][k]! + 0.05 * gauss();
      return { id: `${seed}-${t}`, t, s: 'l', f: {}, T: 100, b: { a: b[0]!, b: b[1]! }, q, c: null, C: [S, C, U], P: probs, k };
    });
  };
  const judge = (events: LoggedEvent[], rule: GateRule) =>
    gateVerdict({ events, agents: two, costWeight: 0, candidate: model, candidateSplit: () => C, serving: { version: 1, split: () => S }, defaultSplit: () => U, value: () => 0.95 }, rule);
  const offset: GateRule = { ...DEFAULT_GATE, controlVariate: 'offset', resamples: 1000 };
  const plain: GateRule = { ...DEFAULT_GATE, resamples: 1000 };

  it('narrows the bound when the reward model is off by a common amount, and passes a candidate as good as the serving version', () => {
    const events = sample(0.8, 3);
    const a = judge(events, plain).comparisons.find((c) => c.against === 'serving')!;
    const b = judge(events, offset).comparisons.find((c) => c.against === 'serving')!;
    assert.ok(b.diff - b.lo < 0.5 * (a.diff - a.lo), `width with the offset ${b.diff - b.lo}, without ${a.diff - a.lo}`);
    let passed = 0;
    let plainPassed = 0;
    for (let s = 0; s < 20; s++) {
      if (judge(sample(0.8, 10 + s), offset).pass) passed++;
      if (judge(sample(0.8, 10 + s), plain).pass) plainPassed++;
    }
    assert.ok(passed >= 16 && passed > plainPassed, `passed ${passed} of 20 with the offset, ${plainPassed} without`);
  });

  it('stays unbiased and refuses a candidate worse than the serving version by more than δ (at most α of repeated samples)', () => {
    let mean = 0;
    let passed = 0;
    const trials = 40;
    for (let s = 0; s < trials; s++) {
      const v = judge(sample(0.77, 100 + s), offset);
      mean += v.comparisons.find((c) => c.against === 'serving')!.diff / trials;
      if (v.pass) passed++;
    }
    assert.ok(Math.abs(mean - -0.03) < 0.006, `mean estimate ${mean} for a true difference of −0.03`);
    assert.ok(passed / trials <= 0.05, `passed ${passed} of ${trials}`);
  });
});

describe('activation gate with a floor on the estimate against the serving version (GateRule.servingFloor)', () => {
  const two = ['a', 'b'];
  const serving = [60, 40];
  const cand = [80, 20];
  const uni = [50, 50];
  const enc = compileFeatures([]);
  const model = { weights: initialWeights(enc.dim, 2, 100, mulberry32(1)), encoder: enc };
  /**
   * 600 decisions played in exact proportion to their logged probabilities (the serving version's split 0.8, the
   * candidate's 0.1, the default's 0.1), rewards fixed per split and a direct part of 0.9 everywhere, so DR
   * estimates each split's value exactly: the serving version 0.9, the default 0.85, the candidate `v`.
   */
  const input = (v: number) => ({
    events: Array.from({ length: 600 }, (_, t): LoggedEvent => {
      const k = t % 10 === 0 ? 1 : t % 10 === 5 ? 2 : 0;
      return { id: String(t), t, s: 'l', f: {}, T: 100, b: { a: [serving, cand, uni][k]![0]!, b: [serving, cand, uni][k]![1]! }, q: [0.9, v, 0.85][k]!, c: null, C: [serving, cand, uni], P: [0.8, 0.1, 0.1], k };
    }),
    agents: two,
    costWeight: 0,
    candidate: model,
    candidateSplit: () => cand,
    serving: { version: 3, split: () => serving },
    defaultSplit: () => uni,
    value: () => 0.9,
  });
  const rule = { ...DEFAULT_GATE, lineage: false, resamples: 500 };

  it('without a floor, a candidate estimated 0.005 below the serving version passes within δ; with floor 0 it is refused, saying why', () => {
    const loose = gateVerdict(input(0.895), rule);
    const vs = loose.comparisons.find((c) => c.against === 'serving')!;
    assert.ok(Math.abs(vs.diff + 0.005) < 1e-9 && vs.lo > -0.02, JSON.stringify(vs));
    assert.equal(loose.pass, true, loose.reason);
    const floored = gateVerdict(input(0.895), { ...rule, servingFloor: 0 });
    assert.equal(floored.pass, false);
    assert.match(floored.reason, /possibly worse than serving version 3: Δ -0\.0050, lower bound -0\.\d+ \(the estimate below the floor 0\)/);
    assert.doesNotMatch(floored.reason, /default/, 'the default comparison passed');
    assert.match(describeRule({ ...rule, servingFloor: 0 }), /and the estimate of DR\(candidate\) − DR\(serving\) itself ≥ 0/);
    assert.doesNotMatch(describeRule(rule), /itself/);
  });

  it('with floor 0, a candidate estimated above the serving version passes; the floor does not apply to the default comparison', () => {
    assert.equal(gateVerdict(input(0.905), { ...rule, servingFloor: 0 }).pass, true);
    // No serving version: only the default comparison, which the floor leaves alone.
    const { serving: _s, ...first } = input(0.895);
    assert.equal(gateVerdict(first, { ...rule, servingFloor: 0 }).pass, true);
  });
});
