import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DecisionRecord } from '../../src/allocation/decisions.js';
import { readDecisionJson } from '../../src/allocation/decisions.js';
import { loadTf } from '../../src/learner/backend.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, uniformBudgets, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * After every model is taken out of service (the runtime guard's revert to the control, or drift recovery's
 * retirement), the learned strategy serves its safe start again — the default strategy explored around, the pending
 * candidate mixed in, the control arm at its usual share — so a later candidate is played, logged with its true
 * probability, and can clear the activation gate. Over a real socket against Redis and BullMQ, with the default gate.
 * (Serving the control on every decision instead logged each decision with the control split at probability 1: no
 * candidate was ever played, every gate said "too little support", and the learner never served a model again.)
 */
const prefix = testPrefix('learner-revert-recovery');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-revert-models-'));
const world = loadWorld('support-basic');
let rt: Running;
let learner: LearnerModule;
const rng = mulberry32(77);
let reported = 0;
const http = jsonHttp(() => rt.url!);

async function round(): Promise<string> {
  const x = sampleContext(world, rng);
  const a = await http('POST', '/v1/allocations', { pipeline: 'sim', features: contextFeatures(x) });
  assert.equal(a.status, 200, a.text);
  const budgets = world.agents.map((ag) => a.json.budgets[ag.name].tokens as number);
  const out = simulateOutcome(world, 0, x, budgets, rng);
  const o = await http('POST', '/v1/outcomes', { decisionId: a.json.decisionId, quality: out.quality });
  assert.equal(o.status, 202, o.text);
  reported++;
  return a.json.decisionId as string;
}

async function settle(): Promise<void> {
  const counters = learnerKeys(rt.core.keys, 'sim').counters;
  await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= reported, 60_000);
  await learner.training.ingest('sim');
}

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: modelsDir });
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  assert.equal((await http('PUT', '/v1/pipelines/sim', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/sim/features', plainDeclaration(worldFeatures(world)))).status, 200);
  // The default gate; retrains only on request; no hold after a revert (the hold is tested in guard-api.test.ts).
  const s = await http('PUT', '/v1/strategies/learn', {
    pipeline: 'sim',
    kind: 'learned',
    params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0, guardHoldOutcomes: 0 },
  });
  assert.equal(s.status, 200, s.text);
  assert.equal((await http('PUT', '/v1/pipelines/sim', { ...worldPipeline(world), defaultStrategy: 'learn' })).status, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('after a revert to the control', () => {
  it('serves the safe start, so a later candidate is played and clears the gate', async () => {
    // A model that has learned the world (the service's trainer and policy, in process), serving as version 1.
    const { tf } = await loadTf();
    const trained = await runLoop(tf, { world, outcomes: 3000, seed: 3, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 }, evalContexts: 50, checkpointEvery: 3000, trainEvery: 500, candidateShare: 0.1 });
    const scaling = Object.fromEntries(trained.encoder.numeric.map((n) => [n.name, { center: n.center, scale: n.scale }]));
    const metrics = { rows: 3000, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 3000 };
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
    for (let i = 0; i < 600; i++) ids.push(await round());

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
    await settle();
    const res = await learner.training.train('sim');
    assert.equal(res.trained, true, res.reason);
    const after = (await http('GET', '/v1/models/sim')).json;
    const gate = after.versions.find((v: { version: number }) => v.version === 2).gate;
    assert.doesNotMatch(gate.reason, /too little support/);
    assert.equal(gate.status, 'passed', gate.reason);
    assert.equal(after.active, 2, 'a model serves again');
    assert.equal(after.guard.toControl, false);
    const id = await round();
    const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
    assert.equal((d.meta!.learner as LearnerMeta).m, 2, 'the next decision is version 2’s');
  });
});
