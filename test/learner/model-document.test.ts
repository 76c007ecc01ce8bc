/**
 * A stored model document of another shape (edited by hand, written by a broken release) is refused by name: the
 * model list and a train request answer 409 MODEL_DOCUMENT_UNREADABLE naming the hash and the field, a retrain is
 * skipped with that reason and the gate's or the guard's writes are refused with it (never a TypeError from inside the
 * registry), the error is logged once per version of the document, and a rollback to a saved version repairs it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { AppError } from '../../src/errors/app-error.js';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { start, type Running } from '../../src/server.js';
import { dropPrefix, testConfig, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('model-document');
const FEATURES: FeatureSpec[] = [{ name: 'task', type: 'categorical', values: ['x', 'y'] }];
const AGENTS = ['a', 'b', 'c'];
const lines: string[] = [];
let rt: Running;
const learnerOf = () => rt.modules.find((m) => m.name === 'learner') as LearnerModule;
const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

before(async () => {
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  rt = await start(testConfig(prefix, { LOG_LEVEL: 'warn' }), log, { api: true, workers: false, listen: false });
  assert.equal((await call('PUT', '/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
  assert.equal((await call('PUT', '/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
  assert.equal((await call('PUT', '/v1/strategies/learn', { pipeline: 'p', kind: 'learned', params: { gate: false } })).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('an unreadable model document', () => {
  it('is refused by name, logged once, and repaired by a rollback', async () => {
    const registry = learnerOf().training.registry;
    const enc = compileFeatures(FEATURES);
    const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
    const saved = await registry.save('p', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(1)), { signature: enc.signature, agents: AGENTS, metrics });
    // The document an external evaluation found: no listing, weights of the wrong shape.
    await rt.core.store.put('models', 'p', { pipeline: 'p', active: 12, weights: { inputDim: 'x' } });
    await rt.core.snapshot.refresh();

    const list = await call('GET', '/v1/models/p');
    assert.equal(list.statusCode, 409, list.body);
    assert.equal(list.json().code, 'MODEL_DOCUMENT_UNREADABLE');
    assert.match(list.json().message, /model document of pipeline "p" \(field "p" of hash .*:\{config\}:models/);
    assert.match(list.json().message, /rollback/);
    const train = await call('POST', '/v1/models/p/train');
    assert.equal(train.statusCode, 409, train.body);
    assert.equal(train.json().code, 'MODEL_DOCUMENT_UNREADABLE');

    const res = await learnerOf().training.train('p');
    assert.equal(res.trained, false);
    assert.match(res.reason ?? '', /is not a valid model document/);
    await assert.rejects(registry.recordGate('p', saved.version, { status: 'refused', reason: 'x', events: 0, comparisons: [], decidedAt: 1 }), (e: unknown) => e instanceof AppError && e.code === 'MODEL_DOCUMENT_UNREADABLE');
    await assert.rejects(registry.propose(saved), (e: unknown) => e instanceof AppError && e.code === 'MODEL_DOCUMENT_UNREADABLE');
    assert.equal(lines.filter((l) => l.includes('is not a valid model document')).length, 1, 'logged once for this version of the document');

    const rb = await call('POST', '/v1/models/p/rollback', { version: saved.version });
    assert.equal(rb.statusCode, 200, rb.body);
    const fixed = await call('GET', '/v1/models/p');
    assert.equal(fixed.statusCode, 200, fixed.body);
    assert.equal(fixed.json().active, saved.version);
  });
});
