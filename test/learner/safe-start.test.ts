import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { compileFeatures, type FeaturesBody } from '../../src/learner/features.js';
import { learnerMetaOf, type LearnerMeta } from '../../src/learner/kind.js';
import { deserializeWeights, forward, type SerializedWeights } from '../../src/learner/model.js';
import { greedyBudgets } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { TrainingService } from '../../src/learner/training.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix, decisionsOf } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * Safe start and activation gate over a real socket: until a version clears the gate the learned strategy serves
 * the pipeline's default strategy (a static split here) explored around; a trained version first runs as the
 * candidate (its split mixed into decisions), then the gate decides and GET /v1/models says what and why.
 * Retrains are called directly (the service's TrainingService.train, in this process) rather than waiting for
 * the queue: the training child runs at idle CPU priority and may wait minutes on a loaded machine.
 */
const prefix = testPrefix('learner-safe-start');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const world = loadWorld('support-basic');
const decl: FeaturesBody = plainDeclaration(worldFeatures(world));
const shares = { orchestrator: 1, retriever: 3, reasoner: 4, validator: 1, formatter: 1 };
let rt: Running;

const http = jsonHttp(() => rt.url!);

const rng = mulberry32(7);
async function round(report = true): Promise<{ id: string; features: Record<string, string | number> }> {
  const x = sampleContext(world, rng);
  const features = contextFeatures(x);
  const r = await http('POST', '/v1/allocations', { pipeline: 'safe', strategy: 'learn', features });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  if (report) {
    const out = simulateOutcome(world, 0, x, world.agents.map((a) => r.json.budgets[a.name].tokens as number), rng);
    assert.equal((await http('POST', '/v1/outcomes', { decisionId: r.json.decisionId, quality: out.quality })).status, 202);
  }
  return { id: r.json.decisionId as string, features };
}
const record = async (id: string) => JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
const names = world.agents.map((a) => a.name);

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
  assert.equal((await http('PUT', '/v1/pipelines/safe', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/strategies/fixed', { pipeline: 'safe', kind: 'static', params: { shares } })).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/safe', { ...worldPipeline(world), defaultStrategy: 'fixed' })).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/safe/features', decl)).status, 200);
  const put = await http('PUT', '/v1/strategies/learn', { pipeline: 'safe', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
  assert.equal(put.status, 200, JSON.stringify(put.json));
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('safe start and activation gate (HTTP)', () => {
  it('serves the default strategy, explored around, before any version has cleared the gate', async () => {
    const models = await http('GET', '/v1/models/safe');
    assert.equal(models.status, 200);
    assert.deepEqual([models.json.active, models.json.serving, models.json.candidate], [null, 'default-strategy', null]);
    assert.match(models.json.gateRule, /lower 95 % bootstrap-t bound/);
    let greedyServed = 0;
    for (let i = 0; i < 40; i++) {
      const { id, features } = await round(false);
      const d = await record(id);
      const m = d.meta!.learner as LearnerMeta;
      assert.equal(m.m, 0, 'no model version decides');
      const fixed = await http('POST', '/v1/allocations', { pipeline: 'safe', strategy: 'fixed', features });
      assert.deepEqual(m.g, names.map((a) => fixed.json.budgets[a].tokens), 'candidate 0 is the default strategy’s split');
      // The logged propensity of the default split: 1 − ε + ε/K with the safe start's ε = 0.2 (no candidate yet).
      assert.ok(m.P[0]! >= 0.8 && m.P[0]! < 1, `the default split's logged probability ${m.P[0]} (P ${JSON.stringify(m.P)})`);
      if (m.k === 0) greedyServed++;
      assert.ok(learnerMetaOf(d, rt.core.view().pipelines.get('safe')), 'the candidate set is reproducible from the log');
    }
    // The draws follow those probabilities: Binomial(40, ≥ 0.8) is under 20 with probability < 1e-5 (the bar was 25, at
    // 0.1–0.3 % a run: one CI run drew 22).
    assert.ok(greedyServed >= 20, `the default split served ${greedyServed} of 40 times (80 % expected)`);
  });

  it('trains a candidate (mixed into decisions), then the gate decides and the models listing says why', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), {}, false);
    for (let i = 0; i < 160; i++) await round();
    await eventually(async () => (await training.ingest('safe')) && (await training.events('safe', 1000)).length >= 160, 300_000, 250);
    const first = await training.train('safe');
    assert.equal(first.trained, true, first.reason);
    const cand = (await http('GET', '/v1/models/safe')).json;
    assert.equal(cand.candidate, first.model!.version);
    assert.equal(cand.serving, 'default-strategy', 'a candidate does not serve');
    assert.equal(cand.versions[0].gate.status, 'candidate');
    const { id } = await round(false);
    const m = learnerMetaOf(await record(id), rt.core.view().pipelines.get('safe'))!;
    assert.deepEqual(m.C.at(-1) === undefined ? undefined : m.C.some((c) => c.every((v, i) => v === (m as LearnerMeta).c![i])), true, 'the candidate’s split is among the logged candidates');
    assert.equal(m.cv, cand.candidate);

    // Too few decisions since the candidate was proposed: it keeps waiting, and no version is trained over it.
    const early = await training.train('safe');
    assert.equal(early.trained, false);
    assert.match(early.reason!, /awaits the gate: only \d+ decisions/);
    // 400 decisions: the candidate's split (10 % of them) is played on ≥ 20 — the gate's support rule — all but
    // with probability ~4e-5 (binomial, mean 40).
    for (let i = 0; i < 400; i++) await round();
    await eventually(async () => (await training.ingest('safe')) && (await training.events('safe', 1000)).length >= 160 + 400, 300_000, 250);
    const second = await training.train('safe');
    assert.equal(second.trained, true, second.reason);
    const list = (await http('GET', '/v1/models/safe')).json;
    const v = list.versions.find((x: { version: number }) => x.version === cand.candidate);
    assert.equal(list.candidate, second.model!.version, 'the new version is the next candidate');
    assert.ok(v.gate.events >= 200, `${v.gate.events} decisions`);
    assert.deepEqual(v.gate.comparisons.map((c: { against: string }) => c.against), ['default']);
    if (v.gate.status === 'passed') {
      assert.equal(list.active, cand.candidate);
      assert.equal(list.serving, 'model');
      // Serving applies the version's stored scaling exactly as training did.
      const full = (await http('GET', '/v1/models/safe?weights=true')).json;
      const enc = compileFeatures(decl.features, full.scaling);
      const weights = deserializeWeights(full.weights as SerializedWeights);
      const { id: served, features } = await round(false);
      const g = greedyBudgets(forward(weights, enc.encode(features)), world.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens })), world.totalTokens);
      assert.deepEqual(((await record(served)).meta!.learner as LearnerMeta).g, g);
    } else {
      assert.equal(v.gate.status, 'refused');
      assert.match(v.gate.reason, /possibly worse than default/);
      assert.equal(list.active, null);
      assert.equal(list.serving, 'default-strategy');
    }
  });
});
