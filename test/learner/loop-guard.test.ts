import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { namedWorld, type SimWorld } from '../../src/learner/sim/family.js';
import { degradeWorld, mostStarved } from '../../src/learner/sim/degrade.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { expectedQuality, loadWorld, oracleBudgets, sampleContext, uniformBudgets, type SimContext } from '../../src/learner/sim/world.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { EXPLORE_DEFAULTS } from '../../src/learner/policy.js';

/**
 * The in-process loop runs the runtime guard's serving-version test as the service does (guard.ts accumulate/judge,
 * revertTarget, the hold): a world that changes at outcome 2,500 so that the agent the oracle starves becomes critical
 * (sim/degrade.ts), with drift recovery off (it would otherwise retire the version first), makes the serving version
 * worse than the default strategy. The guard reverts it (one version back or to the safe start), holds activations
 * for `guardHold` outcomes, and the served splits after the change are better than without the guard; with the guard
 * off there is no revert. No Redis: the loop is pure.
 */
const base = loadWorld('support-basic');
const rng = mulberry32(5);
const contexts = Array.from({ length: 200 }, () => sampleContext(base, rng));
const uniform = uniformBudgets(base, base.totalTokens);
const starved = mostStarved(base, contexts.map((x) => oracleBudgets(base, 0, x, base.totalTokens)), uniform);
const degraded = degradeWorld(base, starved, 16);
const CHANGE = 2500;
const N = 6000;
const before = namedWorld(base);
const after = namedWorld(degraded);
const world: SimWorld<SimContext> = {
  ...before,
  name: 'support-basic-degraded-at-2500',
  driftAt: CHANGE,
  expected: (phase, c, b) => (phase === 0 ? before : after).expected(0, c, b),
  outcome: (phase, c, b, r) => (phase === 0 ? before : after).outcome(0, c, b, r),
  oracle: (phase, c, total) => (phase === 0 ? before : after).oracle(0, c, total),
};

describe('the in-process loop runs the serving-version guard', () => {
  it('reverts a version the change made worse than the default, holds activations, and serves better than without it', async () => {
    const { tf } = await loadTf();
    // A fixed control share (controlShareMin = controlShare), so that before the change the runs with and without the
    // guard are one run; the guard's lowered share while the learned arm leads is checked last.
    const common = { world, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS }, outcomes: N, seed: 11, evalContexts: 0, checkpointEvery: N, trainEvery: 500, controlShare: 0.2, controlShareMin: 0.2, driftRecovery: null, guardHold: 1000 } as const;
    const on = await runLoop(tf, common);
    const off = await runLoop(tf, { ...common, guard: false });
    // The change makes what the learner serves worse than the default split (the fixture's precondition).
    const gap = (r: typeof off, from: number, to: number) => {
      let s = 0;
      for (let t = from; t < to; t++) s += r.served[t]! - expectedQuality(degraded, 0, r.contexts[t] as SimContext, uniform);
      return s / (to - from);
    };
    assert.ok(gap(off, CHANGE, CHANGE + 1000) < -0.05, `without the guard the learner serves below the default after the change (${gap(off, CHANGE, CHANGE + 1000)})`);

    assert.deepEqual(off.guardReverts, [], 'no revert with the guard off');
    assert.ok(on.guardReverts.length >= 1, 'the guard reverted');
    const first = on.guardReverts[0]!;
    assert.ok(first.at > CHANGE, `the first revert comes after the change (${first.at})`);
    assert.ok(first.diff < 0, `learned − control ${first.diff}`);
    // One step back at most, then the safe start (revertTarget: a segment that began with a step back reverts to 0).
    if (first.to > 0 && on.guardReverts[1]) assert.equal(on.guardReverts[1].to, 0, JSON.stringify(on.guardReverts));
    // Held: no version newer than the reverted one serves within the hold.
    for (let t = first.at; t < Math.min(N, first.at + 1000); t++) assert.ok(on.servingVersion[t]! < first.from, `outcome ${t} served version ${on.servingVersion[t]} during the hold`);
    // The guard's reverts serve the user better than letting the version serve.
    const end = Math.min(N, first.at + 1000);
    assert.ok(gap(on, first.at, end) > gap(off, first.at, end), `after the revert: with the guard ${gap(on, first.at, end)}, without ${gap(off, first.at, end)}`);
    // Before the change both runs are the same run, draw for draw (the guard draws nothing).
    assert.deepEqual(Array.from(on.served.subarray(0, CHANGE)), Array.from(off.served.subarray(0, CHANGE)));

    // With the guard lowering the control share while the learned arm leads (the default floor 0.01): fewer control
    // decisions before the change, and the change is still caught and reverted, to the user's gain.
    const { controlShareMin: _fixed, ...adaptive } = common;
    const lowered = await runLoop(tf, adaptive);
    const controls = (r: typeof on) => r.controlServed.subarray(0, CHANGE).reduce((a, b) => a + b, 0);
    assert.ok(controls(lowered) < controls(on), `control decisions before the change: ${controls(lowered)} against ${controls(on)} at the fixed share`);
    assert.ok(lowered.guardReverts.length >= 1 && lowered.guardReverts[0]!.at > CHANGE, JSON.stringify(lowered.guardReverts));
    const lEnd = Math.min(N, lowered.guardReverts[0]!.at + 1000);
    assert.ok(gap(lowered, lowered.guardReverts[0]!.at, lEnd) > gap(off, lowered.guardReverts[0]!.at, lEnd));
  });
});
