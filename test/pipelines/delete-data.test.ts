/**
 * Deleting an object deletes its data. Before: a strategy deleted and re-created under its id answered the old
 * one's statistics (count 3, mean 0.1); a deleted pipeline's strategy statistics, learner buffer, pending set, model
 * versions and counters stayed in Redis forever (no TTL), and a pipeline re-created under the id inherited them.
 * An outcome of a decision made before the delete, reported after it (a straggler), must neither bring those keys
 * back nor count for the object re-created under the id.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { LearnerModule } from '../../src/learner/module.js';
import type { PipelinesModule } from '../../src/pipelines/routes.js';
import { PURGE_PASSES_MS } from '../../src/pipelines/purge.js';
import { isApplied } from '../../src/feedback/processor.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { keysWithoutTtl } from '../helpers/ttl-scan.js';

const prefix = testPrefix('delete-data');
const OPERATOR = 'delete-data-operator-key-0123456789abcdef';
const P = { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] };
const FEATURES = { features: [{ name: 'task', type: 'categorical', values: ['x', 'y'] }] };
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-delete-models-'));
let rt: Running;

const call = async (method: string, url: string, payload?: unknown) => {
  const r = await rt.app!.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${OPERATOR}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, body: r.body ? (r.json() as Record<string, unknown>) : {} };
};
const allocate = async (pipeline: string, strategy: string) => {
  const d = await call('POST', '/v1/allocations', { pipeline, strategy, features: { task: 'x' } });
  assert.equal(d.status, 200, JSON.stringify(d.body));
  return String(d.body.decisionId);
};
const report = async (decisionId: string, quality: number) => assert.equal((await call('POST', '/v1/outcomes', { decisionId, quality })).status, 202);
const count = async (strategy: string) => (await call('GET', `/v1/strategies/${strategy}/stats`)).body.count;
const processed = async (result: string) => (await rt.core.metrics.outcomesProcessed.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
const unexpiring = (pipeline: string) => keysWithoutTtl(rt.core.redis, `${rt.core.keys.pipeline(pipeline)}:*`);
const purger = () => (rt.modules.find((m) => m.name === 'pipelines') as PipelinesModule).purger;

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ADMIN_KEY: OPERATOR, APPORTION_MODELS_DIR: modelsDir });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('deleting a strategy', () => {
  it('deletes its statistics: one re-created under the id starts at 0, and a late outcome of the deleted one does not count for it', async () => {
    assert.equal((await call('PUT', '/v1/pipelines/sp', P)).status, 200);
    assert.equal((await call('PUT', '/v1/strategies/qz-s', { pipeline: 'sp', kind: 'uniform' })).status, 200);
    for (let i = 0; i < 3; i++) await report(await allocate('sp', 'qz-s'), 0.1);
    await eventually(async () => (await count('qz-s')) === 3);
    const straggler = await allocate('sp', 'qz-s');

    assert.equal((await call('DELETE', '/v1/strategies/qz-s')).status, 204);
    assert.deepEqual(await unexpiring('sp'), [], 'no statistics left behind');
    assert.equal((await call('PUT', '/v1/strategies/qz-s', { pipeline: 'sp', kind: 'static', params: { shares: { a: 0.5, b: 0.5 } } })).status, 200);
    assert.equal(await count('qz-s'), 0, 'the re-created strategy starts at 0');

    // The deleted strategy's decision, reported now: the outcome is applied (the pipeline lives), its arm is not.
    await report(straggler, 0.9);
    await eventually(() => isApplied(rt.core.redis, rt.core.keys, 'sp', straggler));
    assert.equal(await count('qz-s'), 0, 'the straggler did not count for the re-created strategy');
    await report(await allocate('sp', 'qz-s'), 0.7);
    await eventually(async () => (await count('qz-s')) === 1);
    assert.equal((await call('GET', '/v1/strategies/qz-s/stats')).body.quality && ((await call('GET', '/v1/strategies/qz-s/stats')).body.quality as { mean: number }).mean, 0.7);
  });
});

describe('deleting a pipeline', () => {
  it('leaves no key without a TTL under its id, also after a late outcome, and a pipeline re-created under the id starts empty', async () => {
    assert.equal((await call('PUT', '/v1/pipelines/qp', P)).status, 200);
    assert.equal((await call('PUT', '/v1/pipelines/qp/features', FEATURES)).status, 200);
    assert.equal((await call('PUT', '/v1/strategies/qp-static', { pipeline: 'qp', kind: 'static', params: { shares: { a: 0.7, b: 0.3 } } })).status, 200);
    assert.equal((await call('PUT', '/v1/strategies/qp-learn', { pipeline: 'qp', kind: 'learned', params: { trainEvery: 100000, gate: false } })).status, 200);
    for (let i = 0; i < 12; i++) await report(await allocate('qp', 'qp-static'), 0.5);
    for (let i = 0; i < 30; i++) await report(await allocate('qp', 'qp-learn'), 0.4);
    await eventually(async () => (await count('qp-static')) === 12 && (await count('qp-learn')) === 30);
    assert.equal((await call('POST', '/v1/models/qp/train')).status, 202);
    // A retrain runs in a child process: on a busy machine one took over a minute (the file's limit bounds the wait).
    await eventually(async () => ((await call('GET', '/v1/models/qp')).body.versions as unknown[] | undefined)?.length, 300_000, 100);
    const lk = learnerKeys(rt.core.keys, 'qp');
    // What the delete must remove is there, kept without expiry: statistics, buffer, models, counters, model-seq.
    const kept = await unexpiring('qp');
    for (const k of [lk.buffer, lk.models, lk.modelSeq, lk.counters, rt.core.keys.pipeline('qp', 'stats', 'strategy', 'qp-static')]) assert.ok(kept.includes(k), `${k} before the delete`);
    const stragglers = [await allocate('qp', 'qp-static'), await allocate('qp', 'qp-learn')];
    const late = await allocate('qp', 'qp-learn');

    assert.equal((await call('DELETE', '/v1/pipelines/qp')).status, 204);
    assert.deepEqual(await unexpiring('qp'), [], 'nothing kept without expiry under the deleted pipeline');

    // Outcomes of decisions made before the delete, reported after it: nothing is written.
    const before = await processed('deleted');
    for (const d of stragglers) await report(d, 0.9);
    await eventually(async () => (await processed('deleted')) - before === 2);
    assert.deepEqual(await unexpiring('qp'), [], 'the late outcomes brought nothing back');
    // The learner's tick on the deleted pipeline (a tick that was half-way through it) writes nothing either.
    await (rt.modules.find((m) => m.name === 'learner') as LearnerModule).training.ingest('qp');
    assert.deepEqual(await unexpiring('qp'), []);

    // The owning tenant gets the id back, empty; an outcome of the deleted pipeline's decision does not feed it.
    assert.equal((await call('PUT', '/v1/pipelines/qp', P)).status, 200);
    assert.equal((await call('PUT', '/v1/strategies/qp-learn', { pipeline: 'qp', kind: 'uniform' })).status, 200);
    assert.equal(await count('qp-learn'), 0);
    assert.equal((await call('GET', '/v1/models/qp')).body.versions && ((await call('GET', '/v1/models/qp')).body.versions as unknown[]).length, 0);
    await report(late, 0.9);
    await eventually(async () => (await processed('deleted')) - before === 3);
    assert.equal(await count('qp-learn'), 0, 'the deleted pipeline’s decision did not count for the re-created one');
    assert.equal(await rt.core.redis.llen(lk.incoming), 0, 'nor reach its learner');
    assert.equal(await rt.core.redis.exists(lk.buffer, lk.models, lk.modelSeq), 0);
    // The deleted pipeline's model file stays on disk, but is not the re-created pipeline's version 1.
    assert.equal((await call('POST', '/v1/models/qp/rollback', { version: 1 })).status, 404);
  });

  it('is finished by the sweep when the deleting process did not get to it (it died after the delete)', async () => {
    assert.equal((await call('PUT', '/v1/pipelines/crash', P)).status, 200);
    assert.equal((await call('PUT', '/v1/strategies/crash-s', { pipeline: 'crash', kind: 'uniform' })).status, 200);
    for (let i = 0; i < 3; i++) await report(await allocate('crash', 'crash-s'), 0.3);
    await eventually(async () => (await count('crash-s')) === 3);
    // The delete as the route commits it, journal entry included, without the purge that follows it.
    const view = rt.core.view();
    const version = view.raw.kinds.pipelines.get('crash')!.version;
    await rt.core.store.delete([{ kind: 'pipelines', id: 'crash' }, { kind: 'strategies', id: 'crash-s' }], { global: view.raw.version }, purger().journalEntry('crash', version));
    await rt.core.snapshot.refresh();
    assert.notDeepEqual(await unexpiring('crash'), []);
    assert.equal(await purger().sweep(Date.now()), 0, 'not due yet');
    assert.ok((await purger().sweep(Date.now() + PURGE_PASSES_MS[0])) > 0);
    assert.deepEqual(await unexpiring('crash'), []);
    // Every pass done, the journal entry goes.
    for (const ms of PURGE_PASSES_MS.slice(1)) await purger().sweep(Date.now() + ms + 1);
    assert.equal(await rt.core.redis.hexists(rt.core.keys.configDeleted(), 'pipelines:crash'), 0);
  });
});
