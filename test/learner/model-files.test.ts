/**
 * Model files are the durable artefact: a file, once written, is never replaced by another model — not after Redis
 * lost its data (the version counter starts again at 1), not by another key prefix sharing APPORTION_MODELS_DIR — and
 * a version the pipeline's current data never had is not served from an earlier dataset's file. Files written in the
 * layout before dataset ids (`<dir>/<pipeline>/<version>/model.json`) are still read for the versions the model
 * document lists with the same creation time.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import type { ModelVersion } from '../../src/learner/registry.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefixA = testPrefix('model-files-a');
const prefixB = testPrefix('model-files-b');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-model-files-'));
const FEATURES: FeatureSpec[] = [{ name: 'task', type: 'categorical', values: ['x', 'y'] }];
const AGENTS = ['a', 'b', 'c'];
let a: Running;
let b: Running;
let seed = 1;

const registryOf = (rt: Running) => (rt.modules.find((m) => m.name === 'learner') as LearnerModule).training.registry;

async function pipeline(rt: Running): Promise<void> {
  const put = (url: string, payload: object) => rt.app!.inject({ method: 'PUT', url, payload });
  assert.equal((await put('/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
  assert.equal((await put('/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
}

async function save(rt: Running): Promise<ModelVersion> {
  const enc = compileFeatures(FEATURES);
  const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
  return registryOf(rt).save('p', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(seed++)), { signature: enc.signature, agents: AGENTS, metrics });
}

/** Every model file under the models directory, as its parsed content. */
function files(dir = modelsDir): ModelVersion[] {
  const out: ModelVersion[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (e.name === 'model.json') out.push(JSON.parse(readFileSync(p, 'utf8')) as ModelVersion);
  }
  return out;
}

/** Whether some model file holds exactly this saved version. */
const kept = (mv: ModelVersion) => files().some((f) => f.version === mv.version && f.createdAt === mv.createdAt && f.weights.w1 === mv.weights.w1);

const rollback = (rt: Running, version: number) => rt.app!.inject({ method: 'POST', url: '/v1/models/p/rollback', payload: { version } });

before(async () => {
  a = await startTest(prefixA, { workers: false }, { APPORTION_MODELS_DIR: modelsDir });
  b = await startTest(prefixB, { workers: false }, { APPORTION_MODELS_DIR: modelsDir });
  await pipeline(a);
  await pipeline(b);
});
after(async () => {
  await a.close();
  await b.close();
  await dropPrefix(prefixA);
  await dropPrefix(prefixB);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('model files', () => {
  it('two key prefixes sharing one models directory never write over each other', async () => {
    const fromA = await save(a);
    const fromB = await save(b);
    assert.equal(fromA.version, fromB.version, 'both prefixes number their first version 1');
    assert.ok(kept(fromA), "prefix A's version 1 file was overwritten by prefix B's");
    assert.ok(kept(fromB));
  });

  it('after Redis lost its data, new versions neither overwrite the old files nor are mistaken for them', async () => {
    const v2 = await save(a);
    const v3 = await save(a);
    assert.equal((await rollback(a, v3.version)).statusCode, 200);
    const before = await save(a);
    // Data loss: every key of the prefix is gone; the process notices (generation marker) and reloads.
    await dropPrefix(prefixA);
    await a.core.generation.check();
    await pipeline(a);
    const after1 = await save(a);
    assert.equal(after1.version, 1, 'numbering starts again after the loss');
    const after2 = await save(a);
    for (const mv of [v2, v3, before, after1, after2]) assert.ok(kept(mv), `the file of version ${mv.version} (created ${mv.createdAt}) was overwritten`);
    // The new dataset never had a version 3 (nor 4): not served from the earlier dataset's file.
    const r = await rollback(a, v3.version);
    assert.equal(r.statusCode, 404, r.body);
    assert.equal(r.json().code, 'MODEL_VERSION_NOT_FOUND');
    assert.equal((await rollback(a, before.version)).statusCode, 404);
    // Its own versions are served, from Redis or, once pruned there, from their files.
    await a.core.redis.hdel(learnerKeys(a.core.keys, 'p').models, String(after2.version));
    const ok = await rollback(a, after2.version);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal((await registryOf(a).get('p', after2.version))?.createdAt, after2.createdAt);
  });

  it('reads a file of the layout before dataset ids only for a version the model document lists with its creation time', async () => {
    const listed = await save(b);
    assert.equal((await rollback(b, listed.version)).statusCode, 200);
    const unlisted = await save(b);
    // Both as an earlier release wrote them: <dir>/<pipeline>/<version>/model.json, no dataset id, no Redis copy.
    const lk = learnerKeys(b.core.keys, 'p');
    for (const mv of [listed, unlisted]) {
      const legacyDir = path.join(modelsDir, 'p', String(mv.version));
      mkdirSync(legacyDir, { recursive: true });
      const { dataset: _d, ...old } = mv;
      writeFileSync(path.join(legacyDir, 'model.json'), JSON.stringify(old));
      renameSync(registryOf(b).modelFile('p', mv.dataset!, mv.version), path.join(modelsDir, `moved-${prefixB}-${mv.version}.json`));
      await b.core.redis.hdel(lk.models, String(mv.version));
    }
    assert.equal((await rollback(b, listed.version)).statusCode, 200);
    assert.equal((await rollback(b, unlisted.version)).statusCode, 404);
  });
});
