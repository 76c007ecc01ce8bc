/**
 * One retrain of a pipeline at a time across worker processes: two instances on one key prefix, each with its own
 * train worker (concurrency 1 is per process), are asked to retrain the same pipeline while a retrain runs. The
 * second waits for the first (its job delayed while the pipeline's retrain lock is held) and then runs; the two never
 * overlap. The training itself is held open by a gate the test controls, so the order is shown, not timed. And a
 * candidate replaced by a newer one before the gate judged it is listed as superseded, not left awaiting the gate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Queue } from 'bullmq';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { TRAIN_QUEUE, type LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { TrainResult } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('train-lock');
const FEATURES: FeatureSpec[] = [{ name: 'task', type: 'categorical', values: ['x', 'y'] }];
const AGENTS = ['a', 'b', 'c'];
let one: Running;
let two: Running;
const learnerOf = (rt: Running) => rt.modules.find((m) => m.name === 'learner') as LearnerModule;
const calls: string[] = [];
let running = 0;
let overlapped = false;
const releases: (() => void)[] = [];

before(async () => {
  one = await startTest(prefix);
  two = await startTest(prefix);
  for (const [name, rt] of [
    ['one', one],
    ['two', two],
  ] as const) {
    learnerOf(rt).training.train = async (): Promise<TrainResult> => {
      running++;
      if (running > 1) overlapped = true;
      calls.push(`start ${name}`);
      await new Promise<void>((r) => releases.push(r));
      calls.push(`end ${name}`);
      running--;
      return { trained: false, reason: 'held by the test' };
    };
  }
});
after(async () => {
  for (const r of releases) r();
  await one.close();
  await two.close();
  await dropPrefix(prefix);
});

describe('retrain lock across processes', () => {
  it('a retrain asked for while another process retrains the pipeline waits for it, then runs', async () => {
    const queue = learnerOf(one).queues!.find((q) => q.name === TRAIN_QUEUE) as Queue;
    await learnerOf(one).enqueueTrain('shared');
    await eventually(() => calls.length === 1);
    // The process that runs the first retrain is busy: the second job is taken by the other one, which must wait.
    await learnerOf(two).enqueueTrain('shared');
    await eventually(async () => (await queue.getDelayedCount()) >= 1 || calls.length > 1);
    assert.equal(calls.length, 1, `a second retrain started while the first ran: ${calls.join(', ')}`);
    // More requests meanwhile join the waiting one.
    await learnerOf(one).enqueueTrain('shared');
    await learnerOf(two).enqueueTrain('shared');
    releases.shift()!();
    await eventually(() => calls.length === 3);
    assert.equal(calls[1]!.startsWith('end'), true, `order: ${calls.join(', ')}`);
    releases.shift()!();
    await eventually(async () => calls.length === 4 && (await queue.getActiveCount()) === 0 && (await queue.getDelayedCount()) === 0 && (await queue.getWaitingCount()) === 0);
    assert.equal(overlapped, false, 'two retrains of the pipeline ran at once');
    assert.deepEqual(
      calls.map((c) => c.split(' ')[0]),
      ['start', 'end', 'start', 'end'],
    );
  });

  it('a candidate replaced before the gate judged it is listed as superseded', async () => {
    const put = (url: string, payload: object) => one.app!.inject({ method: 'PUT', url, payload });
    assert.equal((await put('/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
    assert.equal((await put('/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
    const enc = compileFeatures(FEATURES);
    const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
    const registry = learnerOf(one).training.registry;
    const [v1, v2] = [await registry.save('p', initialWeights(enc.dim, 3, 3000, mulberry32(1)), { signature: enc.signature, agents: AGENTS, metrics }), await registry.save('p', initialWeights(enc.dim, 3, 3000, mulberry32(2)), { signature: enc.signature, agents: AGENTS, metrics })];
    await registry.propose(v1);
    const doc = await registry.propose(v2);
    assert.equal(doc.candidate?.version, v2.version);
    const older = doc.versions.find((v) => v.version === v1.version)!;
    assert.equal(older.gate?.status, 'refused', `version ${v1.version} is still listed as ${older.gate?.status}: ${older.gate?.reason}`);
    assert.match(older.gate.reason, /superseded: version 2/);
    assert.equal((await registry.get('p', v1.version))?.gate?.status, 'refused');
    const listed = (await one.app!.inject({ method: 'GET', url: '/v1/models/p' })).json() as { versions: { version: number; gate?: { status: string; reason: string } }[] };
    assert.match(listed.versions.find((v) => v.version === v1.version)?.gate?.reason ?? '', /superseded/);
  });
});
