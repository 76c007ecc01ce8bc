/**
 * A feature declaration changed while a retrain is in flight. The retrain takes the declaration (and its encoder
 * signature) once, when it starts; a version must never be fitted on one encoding and stamped with another's
 * signature (it would then be accepted as compatible and serve every request through the wrong scaling), and a
 * declaration of another width must not make the retrain fail with a tensor-shape error. A retrain that straddles a
 * change is skipped with its reason; the next one trains for the new declaration.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import type { LearnedParams } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { TrainingService } from '../../src/learner/training.js';
import type { TrainJobInput } from '../../src/learner/train-process.js';
import type { Pipeline } from '../../src/pipelines/schema.js';
import type { Running } from '../../src/server.js';
import { decisionsOf, dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('train-declaration-race');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const AGENTS = ['a', 'b', 'c'];
const NONE: FeatureSpec[] = [{ name: 'len', type: 'numeric' }];
const LOG: FeatureSpec[] = [{ name: 'len', type: 'numeric', transform: 'log' }];
const WIDER: FeatureSpec[] = [
  { name: 'len', type: 'numeric' },
  { name: 'kind', type: 'categorical', values: ['x', 'y', 'z'] },
];
let rt: Running;

const inject = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

async function declare(features: FeatureSpec[]): Promise<void> {
  const r = await inject('PUT', '/v1/pipelines/p/features', { features });
  assert.equal(r.statusCode, 200, r.body);
  await rt.core.snapshot.refresh();
}

/** A retrain whose drift check or training job is followed by a change of the declaration (the race, made deterministic). */
class Racing extends TrainingService {
  duringGate: (() => Promise<void>) | undefined;
  duringJob: (() => Promise<void>) | undefined;
  override async checkDrift(pipeline: Pipeline, params: LearnedParams, outcomes: number) {
    const out = await super.checkDrift(pipeline, params, outcomes);
    const hook = this.duringGate;
    this.duringGate = undefined;
    await hook?.();
    return out;
  }
  protected override async runJob(pipelineId: string, input: TrainJobInput) {
    const out = await super.runJob(pipelineId, input);
    const hook = this.duringJob;
    this.duringJob = undefined;
    await hook?.();
    return out;
  }
}

const rng = mulberry32(11);
async function traffic(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const len = Math.round(1000 * Math.exp(rng() * 2 - 1));
    const r = await inject('POST', '/v1/allocations', { pipeline: 'p', strategy: 'learn', features: { len, kind: 'x' }, totalTokens: 6000 });
    assert.equal(r.statusCode, 200, r.body);
    const b = r.json().budgets;
    const q = Math.min(1, (b.a.tokens / 2000) * 0.5 + (b.b.tokens / 6000) * 0.5);
    assert.equal((await inject('POST', '/v1/outcomes', { decisionId: r.json().decisionId, quality: q })).statusCode, 202);
  }
}

async function versions(): Promise<{ version: number; signature: string }[]> {
  const r = await inject('GET', '/v1/models/p');
  assert.equal(r.statusCode, 200, r.body);
  return r.json().versions;
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_MODELS_DIR: modelsDir });
  assert.equal((await inject('PUT', '/v1/pipelines/p', { defaultTotalTokens: 6000, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
  await declare(NONE);
  // gate: false, as in the report: a trained version serves at once, so a mislabelled one would be activated.
  const s = await inject('PUT', '/v1/strategies/learn', { pipeline: 'p', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, gate: false } });
  assert.equal(s.statusCode, 200, s.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('a feature declaration changed during a retrain', () => {
  it('is not mixed into the retrain: nothing is saved with a signature it was not trained for, nothing fails, the next retrain uses the new declaration', async () => {
    const training = new Racing(rt.core, decisionsOf(rt), { minSteps: 20 }, false);
    await traffic(150);
    await eventually(async () => (await training.ingest('p')) && (await training.events('p', 1000)).length >= 150, 120_000, 100);

    // Same width (none → log), changed after the retrain started and before it trains.
    training.duringGate = () => declare(LOG);
    const sameWidth = await training.train('p');
    assert.equal(sameWidth.trained, false);
    assert.match(sameWidth.reason!, /feature declaration changed before training/);
    assert.deepEqual(await versions(), [], 'no version was saved');

    // Another width (1 numeric → + a categorical of 3), changed the same way: skipped, not a tensor-shape error.
    training.duringGate = () => declare(WIDER);
    const wider = await training.train('p');
    assert.equal(wider.trained, false);
    assert.match(wider.reason!, /feature declaration changed before training/);

    // Changed while the job trains: the version (fitted on the declaration of the start) is not saved.
    training.duringJob = () => declare(NONE);
    const during = await training.train('p');
    assert.equal(during.trained, false);
    assert.match(during.reason!, /feature declaration changed while it trained/);
    assert.deepEqual(await versions(), [], 'no version was saved');

    // No change: it trains for the declaration in place, with that declaration's signature, and serves (gate off).
    const calm = await training.train('p');
    assert.equal(calm.trained, true, calm.reason);
    const list = await versions();
    assert.deepEqual(
      list.map((v) => v.signature),
      [compileFeatures(NONE).signature],
    );
    assert.equal((await inject('GET', '/v1/models/p')).json().serving, 'model');
  });
});
