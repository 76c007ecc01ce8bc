/**
 * A version a retrain saved but never proposed or activated (its process was killed, or lost Redis, between the save
 * and the listing: seen with two servers on one prefix, one killed while it trained) is listed by the next retrain as
 * `refused` with an `abandoned` reason, in the model list and in its Redis copy: the list has no hole, and the serving
 * version and the candidate are the ones the retrains proposed. And a candidate still pending when the strategy's gate is
 * turned off is superseded by the next (activated) version: it stayed the candidate, awaiting a gate that never ran,
 * its split mixed into decisions for ever.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { TrainingService } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { decisionsOf, dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('abandoned-versions');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const AGENTS = ['a', 'b', 'c'];
const FEATURES: FeatureSpec[] = [{ name: 'len', type: 'numeric', transform: 'log' }];
let rt: Running;

const inject = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

const rng = mulberry32(5);
async function traffic(n: number, pipeline = 'p', strategy = 'learn'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await inject('POST', '/v1/allocations', { pipeline, strategy, features: { len: Math.round(1000 * Math.exp(rng() * 2 - 1)) }, totalTokens: 6000 });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((await inject('POST', '/v1/outcomes', { decisionId: r.json().decisionId, quality: rng() })).statusCode, 202);
  }
}

interface Listed {
  version: number;
  gate?: { status: string; reason: string };
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_MODELS_DIR: modelsDir });
  assert.equal((await inject('PUT', '/v1/pipelines/p', { defaultTotalTokens: 6000, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
  assert.equal((await inject('PUT', '/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
  const s = await inject('PUT', '/v1/strategies/learn', { pipeline: 'p', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, gate: false } });
  assert.equal(s.statusCode, 200, s.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('a version saved by a retrain that stopped before proposing it', () => {
  it('is listed as abandoned by the next retrain', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), { minSteps: 20 }, false);
    await traffic(80);
    await eventually(async () => (await training.ingest('p')) && (await training.events('p', 1000)).length >= 80, 120_000, 100);
    const first = await training.train('p');
    assert.equal(first.trained, true, first.reason);
    assert.equal(first.model!.version, 1);

    // The retrain of a process killed right after its save: version 2 is in Redis (and its file), never listed.
    const enc = compileFeatures(FEATURES);
    const metrics = { rows: 80, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 80 };
    const orphan = await training.registry.save('p', initialWeights(enc.dim, AGENTS.length, 6000, mulberry32(2)), { signature: enc.signature, agents: AGENTS, metrics });
    assert.equal(orphan.version, 2);

    const next = await training.train('p');
    assert.equal(next.trained, true, next.reason);
    assert.equal(next.model!.version, 3);
    const list = (await inject('GET', '/v1/models/p')).json() as { active: number; candidate: number | null; versions: Listed[] };
    assert.deepEqual(list.versions.map((v) => v.version), [3, 2, 1], 'no hole in the list');
    assert.equal(list.active, 3);
    assert.equal(list.candidate, null);
    const two = list.versions.find((v) => v.version === 2)!;
    assert.equal(two.gate?.status, 'refused');
    assert.match(two.gate?.reason ?? '', /^abandoned: the retrain that saved it stopped before it was proposed/);
    assert.equal((await training.registry.get('p', 2))?.gate?.status, 'refused', 'its Redis copy says so too');
    // Still a saved version: an operator may serve it.
    const rb = await inject('POST', '/v1/models/p/rollback', { version: 2 });
    assert.equal(rb.statusCode, 200, rb.body);
    assert.equal(rb.json().active, 2);

    // An orphan below the newest listed version (left by a release that did not list them: a later retrain proposed
    // over it): version 4 saved and never listed, version 5 proposed as before; the next retrain lists 4.
    const four = await training.registry.save('p', initialWeights(enc.dim, AGENTS.length, 6000, mulberry32(4)), { signature: enc.signature, agents: AGENTS, metrics });
    const five = await training.registry.save('p', initialWeights(enc.dim, AGENTS.length, 6000, mulberry32(5)), { signature: enc.signature, agents: AGENTS, metrics });
    await training.registry.propose(five);
    assert.deepEqual(((await inject('GET', '/v1/models/p')).json() as { versions: Listed[] }).versions.map((v) => v.version), [5, 3, 2, 1]);
    const again = await training.train('p');
    assert.equal(again.trained, true, again.reason);
    const after = (await inject('GET', '/v1/models/p')).json() as { versions: Listed[] };
    assert.deepEqual(after.versions.map((v) => v.version), [6, 5, four.version, 3, 2, 1]);
    assert.match(after.versions.find((v) => v.version === four.version)?.gate?.reason ?? '', /^abandoned/);
    assert.match(after.versions.find((v) => v.version === 5)?.gate?.reason ?? '', /^superseded: version 6/, 'a listed version keeps its own verdict (not abandoned)');
  });

  it('a candidate pending when the gate is turned off is superseded by the next version, not mixed in for ever', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), { minSteps: 20 }, false);
    assert.equal((await inject('PUT', '/v1/pipelines/q', { defaultTotalTokens: 6000, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
    assert.equal((await inject('PUT', '/v1/pipelines/q/features', { features: FEATURES })).statusCode, 200);
    const set = async (gate: boolean) => {
      const s = await inject('PUT', '/v1/strategies/learnq', { pipeline: 'q', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, gate } });
      assert.equal(s.statusCode, 200, s.body);
      await rt.core.snapshot.refresh();
    };
    await set(true);
    await traffic(30, 'q', 'learnq');
    await eventually(async () => (await training.ingest('q')) && (await training.events('q', 1000)).length >= 30, 300_000, 100);
    const proposed = await training.train('q');
    assert.equal(proposed.trained, true, proposed.reason);
    const pending = proposed.model!.version;
    assert.equal((await inject('GET', '/v1/models/q')).json().candidate, pending);

    await set(false);
    const next = await training.train('q');
    assert.equal(next.trained, true, next.reason);
    const list = (await inject('GET', '/v1/models/q')).json() as { active: number; candidate: number | null; versions: Listed[] };
    assert.equal(list.active, next.model!.version);
    assert.equal(list.candidate, null, 'no candidate left awaiting a gate that is off');
    const old = list.versions.find((v) => v.version === pending)!;
    assert.equal(old.gate?.status, 'refused');
    assert.match(old.gate?.reason ?? '', new RegExp(`^superseded: version ${next.model!.version} was trained with the activation gate off`));
    assert.equal((await training.registry.get('q', pending))?.gate?.status, 'refused');
  });

  it('the pending candidate activated by a rollback is listed as served, not left awaiting the gate', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), { minSteps: 20 }, false);
    assert.equal((await inject('PUT', '/v1/pipelines/r', { defaultTotalTokens: 6000, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
    assert.equal((await inject('PUT', '/v1/pipelines/r/features', { features: FEATURES })).statusCode, 200);
    const s = await inject('PUT', '/v1/strategies/learnr', { pipeline: 'r', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
    assert.equal(s.statusCode, 200, s.body);
    await traffic(30, 'r', 'learnr');
    await eventually(async () => (await training.ingest('r')) && (await training.events('r', 1000)).length >= 30, 300_000, 100);
    const proposed = await training.train('r');
    assert.equal(proposed.trained, true, proposed.reason);
    const v = proposed.model!.version;
    assert.equal((await inject('GET', '/v1/models/r')).json().candidate, v);

    const rb = await inject('POST', '/v1/models/r/rollback', { version: v });
    assert.equal(rb.statusCode, 200, rb.body);
    const list = (await inject('GET', '/v1/models/r')).json() as { active: number; candidate: number | null; versions: Listed[] };
    assert.equal(list.active, v);
    assert.equal(list.candidate, null);
    const listed = list.versions.find((x) => x.version === v)!;
    assert.equal(listed.gate?.status, 'passed', 'no version listed as awaiting the gate while none is pending');
    assert.match(listed.gate?.reason ?? '', /^not judged: an operator activated it/);
    assert.equal((await training.registry.get('r', v))?.gate?.status, 'passed', 'its Redis copy too');
  });
});
