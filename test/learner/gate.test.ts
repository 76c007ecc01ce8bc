import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures, fitScaling } from '../../src/learner/features.js';
import { DEFAULT_GATE, gateVerdict } from '../../src/learner/gate.js';
import { forward, initialWeights, OUTPUTS, type ModelWeights } from '../../src/learner/model.js';
import { importanceWeight } from '../../src/learner/ope-service.js';
import { CANDIDATE_SHARE, decideAround, greedyBudgets, withCandidate } from '../../src/learner/policy.js';
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
