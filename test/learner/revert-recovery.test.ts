import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DecisionRecord } from '../../src/allocation/decisions.js';
import { readDecisionJson } from '../../src/allocation/decisions.js';
import { loadTf } from '../../src/learner/backend.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { loadWorld, uniformBudgets } from '../../src/learner/sim/world.js';
import { testPrefix } from '../helpers/env.js';
import { startLearnerWorld, type LearnerWorldServer } from '../helpers/learner-world.js';

/**
 * After every model is taken out of service (the runtime guard's revert to the control, or drift recovery's
 * retirement), the learned strategy serves its safe start again — the default strategy explored around, the pending
 * candidate mixed in, the control arm at its usual share — so a later candidate is played, logged with its true
 * probability, and can clear the activation gate. Over a real socket against Redis and BullMQ, with the default gate.
 * (Serving the control on every decision instead logged each decision with the control split at probability 1: no
 * candidate was ever played, every gate said "too little support", and the learner never served a model again.)
 */
const world = loadWorld('support-basic');
let sv: LearnerWorldServer;

before(async () => {
  // The default gate; retrains only on request; no hold after a revert (the hold is tested in guard-api.test.ts).
  sv = await startLearnerWorld(testPrefix('learner-revert-recovery'), world, { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0, guardHoldOutcomes: 0 }, mulberry32(77));
});
after(async () => {
  await sv.close();
});

describe('after a revert to the control', () => {
  it('serves the safe start, so a later candidate is played and clears the gate', async () => {
    const { rt, learner, http } = sv;
    // A model that has learned the world (the service's trainer and policy, in process), serving as version 1.
    const { tf } = await loadTf();
    const trained = await runLoop(tf, { world, outcomes: 3000, seed: 3, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 }, evalContexts: 50, checkpointEvery: 3000, trainEvery: 500, candidateShare: 0.1 });
    const scaling = Object.fromEntries(trained.encoder.numeric.map((n) => [n.name, { center: n.center, scale: n.scale }]));
    // The fit's own held-out error (drift recovery compares later residuals with it: 0 would read as a change).
    const fit = trained.versions.at(-1)!.metrics!;
    const metrics = { rows: 3000, steps: 0, ms: 0, trainMse: fit.trainMse, holdoutMse: fit.holdoutMse, holdoutVariance: fit.holdoutVariance, backend: 'test', costWeight: 0, buffer: 3000 };
    const meta = { signature: trained.encoder.signature, agents: world.agents.map((a) => a.name), metrics, scaling };
    const v1 = await learner.training.registry.save('sim', trained.weights, meta);
    await learner.training.registry.activate(v1, { manual: true });
    assert.equal((await http('GET', '/v1/models/sim')).json.active, 1);

    // Every model out of service, as the guard's revert to the control (or drift recovery's retirement) leaves it.
    const done = await learner.training.registry.revert(
      'sim',
      { reason: 'guard', from: 1, to: 0, at: Date.now(), diff: -0.1, ci: [-0.2, -0.01], learned: { n: 500, mean: 0.5 }, control: { n: 40, mean: 0.6, strategy: '@uniform' } },
      0,
    );
    assert.ok(done, 'reverted');
    const listed = (await http('GET', '/v1/models/sim')).json;
    assert.equal(listed.active, null);
    assert.equal(listed.guard.toControl, true);

    // The same learned weights, retrained and proposed: a candidate that is truly better than the default.
    const v2 = await learner.training.registry.save('sim', trained.weights, meta);
    await learner.training.registry.propose(v2);
    const ids: string[] = [];
    for (let i = 0; i < 600; i++) ids.push((await sv.round()).id);

    // The safe start serves: the control arm at its usual share (5 %), the candidate mixed in at its share.
    const uniform = uniformBudgets(world, world.totalTokens);
    let control = 0;
    let candidate = 0;
    for (const id of ids) {
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
      const m = d.meta!.learner as LearnerMeta;
      assert.equal(m.m, 0, 'no model serves');
      assert.equal(m.x!.s, 0.05, 'the control arm at its usual share');
      assert.deepEqual(m.x!.b, uniform);
      if (m.x!.a === 1) control++;
      else if (m.cw === 1 && m.cv === 2) candidate++;
    }
    assert.ok(control >= 10 && control <= 60, `${control} control decisions of 600 at 5 %`);
    assert.ok(candidate >= 60, `${candidate} decisions of 600 served the candidate's split`);

    // The candidate is judged at the next retrain on the decisions since it was proposed: it has support and passes.
    await sv.settle();
    const res = await learner.training.train('sim');
    assert.equal(res.trained, true, res.reason);
    const after = (await http('GET', '/v1/models/sim')).json;
    const gate = after.versions.find((v: { version: number }) => v.version === 2).gate;
    assert.doesNotMatch(gate.reason, /too little support/);
    assert.equal(gate.status, 'passed', gate.reason);
    assert.equal(after.active, 2, 'a model serves again');
    assert.equal(after.guard.toControl, false);
    const { id } = await sv.round();
    const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
    assert.equal((d.meta!.learner as LearnerMeta).m, 2, 'the next decision is version 2’s');
  });

  it('with nothing serving and nothing pending, a retrain warm-starts from the newest version, not the untrained prior', async () => {
    const { learner, http } = sv;
    const registry = learner.training.registry;
    // Version 2 serves and version 3 (trained by the retrain above) is the candidate; take 2 out of service and refuse
    // 3 as the guard's candidate arm does: nothing serves and nothing is pending.
    const doc = registry.doc('sim')!;
    assert.deepEqual([doc.active, doc.candidate?.version], [2, 3]);
    assert.ok(await registry.revert('sim', { reason: 'guard', from: 2, to: 0, at: Date.now(), diff: -0.1, ci: [-0.2, -0.01], learned: { n: 500, mean: 0.5 }, control: { n: 40, mean: 0.6, strategy: '@uniform' } }, 0));
    await registry.recordGate('sim', 3, { status: 'refused', reason: 'refused by the runtime guard (test)', events: 0, comparisons: [], decidedAt: Date.now() });
    assert.equal(registry.doc('sim')!.candidate, undefined);
    for (let i = 0; i < 300; i++) await sv.round();
    await sv.settle();
    // No change of the world was detected: after one, a retrain with nothing serving starts from the prior instead
    // (drift.ts COLD_AFTER_CHANGE_DEFAULT; drift-api.test.ts).
    assert.deepEqual((await http('GET', '/v1/models/sim')).json.drift?.changes ?? [], []);
    const res = await learner.training.train('sim');
    assert.equal(res.trained, true, res.reason);
    assert.equal(res.model!.version, 4);
    assert.equal(res.model!.metrics.warmStart, 3, 'warm-started from version 3');
    const listed = (await http('GET', '/v1/models/sim')).json.versions.find((v: { version: number }) => v.version === 4);
    assert.equal(listed.metrics.warmStart, 3);
  });
});
