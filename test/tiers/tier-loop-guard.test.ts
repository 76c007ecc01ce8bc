import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tierAgentsOf } from '@apportion/sdk/engine';
import { stratumErrors, tierStratumOf } from '../../src/learner/drift.js';
import { compileFeatures } from '../../src/learner/features.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runTierLoop, type TierLoopVersion } from '../../src/learner/sim/tier-loop.js';
import { loadTierWorld, tierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { fitTier, initialParams, serializeTierParams, tierErrors, type TierEvent } from '../../src/learner/tiers-policy.js';
import { randomTierRows } from '../helpers/tier-server.js';

/**
 * The service's tier loop in process (src/learner/sim/tier-loop.ts) runs the runtime guard as the service does: a
 * joint version fitted on cheap-suffices (it puts the writer and the formatter on haiku) serves frozen; halfway the
 * cheap model degrades (haiku reaches a tenth of what it did for every agent), so the version becomes worse than the
 * control strategy (uniform on opus), and the guard's always-valid test reverts it to the control: the safe start
 * then serves (the default action explored around). With the guard's reverts off it keeps serving; without the degradation it is not reverted.
 * Drift recovery runs at the loop's retrains: a version fitted where haiku matches opus on half the tokens, serving
 * in cheap-suffices, is detected at the first retrain. No Redis: the loop is pure.
 */
const tw = loadTierWorld('cheap-suffices');
const degraded = tierWorld({
  ...tw.doc,
  name: 'cheap-suffices-degraded',
  response: Object.fromEntries(Object.entries(tw.doc.response).map(([agent, byModel]) => [agent, Object.fromEntries(Object.entries(byModel).map(([m, r]) => [m, { ...r, reach: r.reach * 0.1 }]))])),
});

/** A joint version fitted on random (models, split) decisions of cheap-suffices. */
function fitted(): TierLoopVersion {
  const encoder = compileFeatures(worldFeatures(tw.world).features);
  const agents = tierAgentsOf(tw.pipeline);
  const rng = mulberry32(3);
  const rows = randomTierRows(tw, encoder, 1500, rng);
  const { params } = fitTier(initialParams(agents, encoder.dim, 3000), agents, rows, { steps: 300, lr: 0.03 });
  const holdoutMse = tierErrors(params, agents, rows.slice(0, 300)).reduce((s, v) => s + v, 0) / 300;
  return { version: 6, tiers: serializeTierParams(params), holdoutMse, rows: rows.length };
}

describe('the tier loop simulates the runtime guard', () => {
  const initial = fitted();
  const base = { world: tw, outcomes: 5000, seed: 4, initial, retrain: false } as const;

  it('reverts a frozen tier version to the control strategy once the world degrades; not with the guard off, nor without the degradation', () => {
    const r = runTierLoop({ ...base, degradeAt: 1500, degraded });
    // The version served on haiku before the degradation (the loop served the joint choice, not the control).
    const before = r.assign.slice(0, 1500).filter((a, t) => r.control[t] === 0 && a.some((m) => m > 0)).length;
    assert.ok(before > 1000, `agents on haiku before the degradation: ${before} decisions`);
    assert.ok(r.reverts.length >= 1, 'the guard reverted');
    const rv = r.reverts[0]!;
    assert.equal(rv.reason, 'guard');
    assert.equal(rv.from, 6);
    assert.equal(rv.to, 0, 'no earlier version: the control strategy serves');
    assert.ok(rv.at > 1500 && rv.at <= 5000, `reverted after the degradation (${rv.at})`);
    assert.ok(rv.diff < 0, `learned − control ${rv.diff}`);
    // From the revert on no version serves: the safe start does (the default action, opus everywhere, explored
    // around), the control arm at its usual 5 %.
    assert.ok(r.version.subarray(rv.at).every((v) => v === 0));
    const after = 5000 - rv.at;
    const control = r.control.subarray(rv.at).reduce((s, v) => s + v, 0);
    assert.ok(control > 0.02 * after && control < 0.1 * after, `control served ${control} of ${after} decisions after the revert`);
    const onHaiku = r.assign.slice(rv.at).filter((a) => a.some((m) => m > 0)).length;
    assert.ok(onHaiku < 0.25 * after, `agents on haiku after the revert: ${onHaiku} of ${after} decisions`);

    const off = runTierLoop({ ...base, degradeAt: 1500, degraded, guard: false });
    assert.equal(off.reverts.length, 0);
    assert.ok(off.control.subarray(rv.at).reduce((s, v) => s + v, 0) < 0.2 * (5000 - rv.at), 'with the guard off the version keeps serving');

    const still = runTierLoop(base);
    assert.deepEqual(still.reverts, [], 'no revert without the degradation');
  });
});

describe('the tier loop simulates drift recovery', () => {
  it('detects the change at the first retrain on a version fitted in another world; not with drift recovery off', () => {
    // Before the change: haiku reaches as far as opus for every agent, on half the tokens (as test/tiers/drift.test.ts).
    const before_ = tierWorld({ ...tw.doc, response: Object.fromEntries(tw.agents.map((a) => [a.name, { [tw.models[1]!]: { reach: 1, pace: 0.5 } }])) });
    const encoder = compileFeatures(worldFeatures(tw.world).features);
    const agents = tierAgentsOf(tw.pipeline);
    const rows = (n: number, seed: number): TierEvent[] => randomTierRows(before_, encoder, n, mulberry32(seed), 5000);
    const { params } = fitTier(initialParams(agents, encoder.dim, 10_000), agents, rows(1500, 1), { steps: 300, lr: 0.03 });
    const hold = rows(500, 2);
    const errs = tierErrors(params, agents, hold);
    // Its held-out errors per kind of action (drift.ts's stratified test): the held-out rows stand for the default's and learned actions alike.
    const keys = (m: number) => hold.map((r) => tierStratumOf(r.action.assign, { m, a: 0 }));
    const holdoutStrata = stratumErrors([...keys(0), ...keys(1)], [...errs, ...errs]);
    const initial = { version: 4, tiers: serializeTierParams(params), holdoutMse: errs.reduce((s, v) => s + v, 0) / hold.length, rows: 1500, holdoutStrata };
    const on = runTierLoop({ world: tw, outcomes: 1000, seed: 3, initial, guard: false });
    const ch = on.changes[0];
    assert.ok(ch, 'a change was detected');
    assert.deepEqual([ch.at, ch.changeAt, ch.version], [500, 0, 4], JSON.stringify(on.changes));
    assert.ok(ch.mse > 1.25 * ch.holdoutMse && ch.n === 500, JSON.stringify(ch));
    const off = runTierLoop({ world: tw, outcomes: 1000, seed: 3, initial, guard: false, driftRecovery: null });
    assert.deepEqual(off.changes, []);
  });
});

describe('the tier loop’s gate override (a bench diagnostic)', () => {
  it('decides activation instead of the gate, given the candidate, the serving version and the default action', () => {
    const initial = fitted();
    const run = (decide: (c: TierLoopVersion, s: TierLoopVersion | undefined) => boolean) => {
      const seen: { candidate: number; serving: number | undefined; defaultOk: boolean }[] = [];
      const r = runTierLoop({
        world: tw,
        outcomes: 1500,
        seed: 5,
        initial,
        guard: false,
        driftRecovery: null,
        gateOverride: (c, s, defaultAction) => {
          const a = defaultAction({ task: 'qa' }, tw.totalTokens, tw.maxCostUsd);
          seen.push({ candidate: c.version ?? 0, serving: s?.version, defaultOk: a.budgets.length === tw.agents.length && a.assign.every((m) => m === 0) });
          return decide(c, s);
        },
      });
      return { r, seen };
    };
    // Retrains at 500, 1000 and 1500: the candidates of 500 and 1000 are judged at 1000 and 1500.
    const never = run(() => false);
    assert.deepEqual(never.seen.map((x) => [x.candidate, x.serving]), [[7, 6], [8, 6]]);
    assert.ok(never.seen.every((x) => x.defaultOk), 'the default action: every agent on the first model');
    assert.deepEqual(never.r.gates.map((g) => [g.version, g.status, g.reason]), [[7, 'refused', 'override'], [8, 'refused', 'override']]);
    assert.ok(never.r.version.every((v) => v === 6), 'the initial version serves throughout');
    const always = run(() => true);
    assert.deepEqual(always.r.gates.map((g) => [g.version, g.status]), [[7, 'passed'], [8, 'passed']]);
    assert.deepEqual(always.seen.map((x) => [x.candidate, x.serving]), [[7, 6], [8, 7]]);
    assert.equal(always.r.version[999], 6);
    assert.equal(always.r.version[1000], 7, 'the passed candidate serves from the next decision');
  });
});
