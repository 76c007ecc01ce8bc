import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { decide, EXPLORE_DEFAULTS, memberWithinStop, membersAgree, withMembers, type ExploreOptions, type PolicyAgent } from '../../src/learner/policy.js';
import { predict, type Heads } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { namedWorld } from '../../src/learner/sim/family.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { loadWorld } from '../../src/learner/sim/world.js';

/**
 * The probes' stop rule on ensemble members' splits and the members' share stopping where they agree with the greedy
 * split (bench options `--ensemble-stop x`, `--ensemble-agree on`; LoopOptions.ensemble.stop/agree; docs/learner.md
 * "Ensemble members under the probes' stop rule"). No Redis: pure.
 */
const explore: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };
const agents: PolicyAgent[] = [
  { min: 50, cap: 4000 },
  { min: 50, cap: 4000 },
  { min: 50, cap: 4000 },
];
// Agent 1 matters (weight 0.95: cutting it costs most of the reward), agents 0 and 2 barely (0.05).
const heads: Heads = { need: Float64Array.from([300, 600, 300]), weight: Float64Array.from([0.05, 0.95, 0.05]), shape: Float64Array.from([1e6, 1e6, 1e6]) };
const total = 3000;
const sum = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0);

describe('memberWithinStop: the probes\u2019 stop rule on a member\u2019s split', () => {
  const g = decide(heads, agents, total, explore, mulberry32(5)).candidates[0]!;

  it('holds at its greedy budget an agent whose cut alone the serving version predicts loses more than stop; the others keep their moves', () => {
    const m = [g[0]! + g[1]! - 60, 60, g[2]!]; // starves the agent that matters, gives agent 0 the tokens
    const out = memberWithinStop(heads, g, m, agents, 0.25);
    assert.equal(out.held, 1);
    assert.equal(out.split[1], g[1], 'the agent that matters is held at its greedy budget');
    assert.equal(sum(out.split), sum(m), 'same total');
    for (let i = 0; i < 3; i++) assert.ok(out.split[i]! >= agents[i]!.min && out.split[i]! <= agents[i]!.cap);
    assert.ok(out.split[0]! > g[0]!, 'agent 0 keeps part of the member\u2019s move');
    // Every agent left below its greedy budget passes the stop at its final budget.
    const yg = predict(heads, g);
    for (let i = 0; i < 3; i++) if (out.split[i]! < g[i]!) {
      const cut = g.slice();
      const d = g[i]! - out.split[i]!;
      cut[i] = out.split[i]!;
      cut[(i + 1) % 3] = cut[(i + 1) % 3]! + d;
      assert.ok((yg - predict(heads, cut)) / yg < 0.5, `agent ${i}`);
    }
  });

  it('leaves a member that starves only agents the version predicts cost little untouched (the same array)', () => {
    const m = [50, g[1]! + g[0]! - 50, g[2]!];
    const out = memberWithinStop(heads, g, m, agents, 0.25);
    assert.equal(out.held, 0);
    assert.equal(out.split, m);
    assert.equal(memberWithinStop(heads, g, [50, 60, total - 110], agents, Infinity).split.join(), [50, 60, total - 110].join(), 'stop ∞ holds nothing');
  });

  it('is a pure function of (heads, g, member, bounds)', () => {
    const m = [g[0]! + g[1]! - 60, 60, g[2]!];
    assert.deepEqual(memberWithinStop(heads, g, m, agents, 0.25), memberWithinStop(heads, g, m.slice(), agents, 0.25));
  });
});

describe('exact logged probabilities with the stop rule on', () => {
  it('the held members\u2019 splits enter withMembers (keepGreedy) at exactly s/K each; frequencies match over 20,000 decisions', () => {
    const rng = mulberry32(17);
    const members = [
      [2000, 100, 900],
      [100, 100, 2800],
      [1400, 200, 1400],
    ];
    const counts = new Map<string, number>();
    let out = decide(heads, agents, total, explore, mulberry32(1));
    let splits: number[][] = [];
    const N = 20000;
    for (let t = 0; t < N; t++) {
      const dec = decide(heads, agents, total, explore, rng);
      const g = dec.candidates[0]!;
      splits = members.map((m) => memberWithinStop(heads, g, m, agents, 0.25).split as number[]);
      out = withMembers(dec, splits, 0.3, rng, true);
      const p0 = dec.probs[0]!;
      const s = Math.min(0.3, (1 - p0) / 2);
      assert.equal(out.probs[0], p0 + splits.filter((b) => b.join() === g.join()).length * (s / 3), 'the greedy split keeps its probability (plus any member held back onto it)');
      assert.ok(Math.abs(sum(out.probs) - 1) < 1e-12);
      assert.deepEqual(out.budgets, out.candidates[out.chosen]);
      const key = out.budgets.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    // The heads and the greedy split are the same on every decision, so the candidate set is too.
    for (const b of splits) assert.equal(b[1], out.candidates[0]![1], 'every member keeps the agent that matters at its greedy budget');
    for (let k = 0; k < out.candidates.length; k++) {
      const f = (counts.get(out.candidates[k]!.join(',')) ?? 0) / N;
      const se = Math.sqrt((out.probs[k]! * (1 - out.probs[k]!)) / N);
      assert.ok(Math.abs(f - out.probs[k]!) < 4 * se + 1e-9, `candidate ${k}: frequency ${f} against ${out.probs[k]}`);
    }
  });
});

describe('membersAgree: the policy\u2019s own candidate tolerance', () => {
  it('is true when every member lies within e^{±δ} of the greedy split per agent, false when one agent of one member lies outside', () => {
    const g = [1000, 1000, 1000];
    assert.equal(membersAgree(g, [[1000, 1000, 1000], [1600, 700, 700]], 0.5), true);
    assert.equal(membersAgree(g, [[1000, 1000, 1000], [1700, 650, 650]], 0.5), false, '1700 > 1000·e^{0.5}');
    assert.equal(membersAgree(g, [[1000, 1000, 1000], [1500, 600, 900]], 0.5), false, '600 < 1000·e^{−0.5}');
    assert.equal(membersAgree(g, [[1500, 700, 800]], -0.5), true, 'an up-only (negative) δ has the same tolerance');
  });
});

describe('the loop with the stop rule and the agreement stop', () => {
  const base = async () => {
    const { tf } = await loadTf();
    const world = namedWorld(loadWorld('support-basic'));
    return { tf, base: { world, explore, outcomes: 600, seed: 3, evalContexts: 0, checkpointEvery: 600, driftRecovery: null, gate: null, train: { epochs: 1, minSteps: 10 } } as const };
  };
  const ens = { k: 3, share: 0.1, sigma: 2, steps: 10, joint: { mu: -2, tau: 0 }, keepGreedy: true } as const;

  it('off (no stop, no agree), or a stop that holds nothing: decides exactly as the ensemble without them', async () => {
    const { tf, base: b } = await base();
    const plain = await runLoop(tf, { ...b, ensemble: ens });
    const neutral = await runLoop(tf, { ...b, ensemble: { ...ens, stop: Infinity, agree: false } });
    assert.ok(plain.ensembleStats!.decisions > 0, 'members served');
    assert.equal(neutral.events.length, plain.events.length);
    for (let t = 0; t < plain.events.length; t++) {
      const a = plain.events[t]!;
      const c = neutral.events[t]!;
      assert.deepEqual([c.b, c.C, c.P, c.k, c.m], [a.b, a.C, a.P, a.k, a.m], `decision ${t}`);
    }
    assert.equal(neutral.ensembleStats!.held, 0);
    assert.equal(neutral.ensembleStats!.agreed, 0);
  });

  it('on: every logged decision is one of its candidates with probabilities summing to 1, and the requests are those of the run without it', async () => {
    const { tf, base: b } = await base();
    const plain = await runLoop(tf, { ...b, ensemble: ens });
    const on = await runLoop(tf, { ...b, ensemble: { ...ens, stop: 0.25, agree: true } });
    assert.ok(on.ensembleStats!.decisions > 0);
    for (let t = 0; t < on.events.length; t++) {
      const e = on.events[t]!;
      if (!e.C) continue; // a certain decision (probability 1)
      assert.ok(Math.abs(sum(e.P as number[]) - 1) < 1e-9, `decision ${t}`);
      assert.deepEqual(Object.values(e.b), e.C[e.k!], `decision ${t}`);
      assert.deepEqual(e.f, plain.events[t]!.f, `request ${t}`);
    }
  });
});
