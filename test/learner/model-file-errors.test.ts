/**
 * A version whose Redis copy was pruned is served from its model file; when that file is corrupt or gone, a rollback
 * says which: 409 MODEL_FILE_UNREADABLE naming the file for one that exists but does not parse (logged once), 404
 * MODEL_VERSION_NOT_FOUND saying "missing" for a listed version whose file is gone — never "has no model version"
 * for a version the model list still shows.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { start, type Running } from '../../src/server.js';
import { dropPrefix, testConfig, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('model-file-errors');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-model-file-errors-'));
const FEATURES: FeatureSpec[] = [{ name: 'task', type: 'categorical', values: ['x', 'y'] }];
const AGENTS = ['a', 'b', 'c'];
const lines: string[] = [];
let rt: Running;
const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

before(async () => {
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  rt = await start(testConfig(prefix, { LOG_LEVEL: 'warn', APPORTION_MODELS_DIR: modelsDir }), log, { api: true, workers: false, listen: false });
  assert.equal((await call('PUT', '/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
  assert.equal((await call('PUT', '/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('model files of pruned versions', () => {
  it('a corrupt file answers MODEL_FILE_UNREADABLE (logged once), a deleted one says it is missing', async () => {
    const registry = (rt.modules.find((m) => m.name === 'learner') as LearnerModule).training.registry;
    const enc = compileFeatures(FEATURES);
    const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
    const save = (seed: number) => registry.save('p', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(seed)), { signature: enc.signature, agents: AGENTS, metrics });
    const [v1, v2, v3] = [await save(1), await save(2), await save(3)];
    for (const v of [v1, v2, v3]) assert.equal((await call('POST', '/v1/models/p/rollback', { version: v.version })).statusCode, 200);
    // Pruned from Redis (as APPORTION_MODEL_VERSIONS_KEEP does); then v1's file is corrupted and v2's deleted.
    await rt.core.redis.hdel(learnerKeys(rt.core.keys, 'p').models, String(v1.version), String(v2.version));
    const f1 = registry.modelFile('p', v1.dataset!, v1.version);
    writeFileSync(f1, '{garbage');
    rmSync(path.dirname(registry.modelFile('p', v2.dataset!, v2.version)), { recursive: true });

    for (let i = 0; i < 2; i++) {
      const bad = await call('POST', '/v1/models/p/rollback', { version: v1.version });
      assert.equal(bad.statusCode, 409, bad.body);
      assert.equal(bad.json().code, 'MODEL_FILE_UNREADABLE');
      assert.ok(bad.json().message.includes(f1), bad.json().message);
    }
    assert.equal(lines.filter((l) => l.includes(f1)).length, 1, 'the corrupt file is logged once');

    const gone = await call('POST', '/v1/models/p/rollback', { version: v2.version });
    assert.equal(gone.statusCode, 404, gone.body);
    assert.equal(gone.json().code, 'MODEL_VERSION_NOT_FOUND');
    assert.match(gone.json().message, /listed but missing/);
    // A version it never had is still plainly "has no model version".
    assert.match((await call('POST', '/v1/models/p/rollback', { version: 99 })).json().message, /has no model version 99/);
    // The serving version (v3) is untouched.
    assert.equal((await call('GET', '/v1/models/p')).json().active, v3.version);
  });
});
