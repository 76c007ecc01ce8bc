import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Queue } from 'bullmq';
import { TRAIN_QUEUE, type LearnerModule } from '../../src/learner/module.js';
import type { TrainResult } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/**
 * The retrain queue against real Redis and BullMQ: a retrain asked for while another of the same pipeline runs is
 * not dropped by the deduplication (the worker frees the key when it starts a job): it waits and runs after the
 * running one, and at most one waits. The training itself is held open by a gate the test controls, so the
 * order is shown deterministically, not by chance.
 */
const prefix = testPrefix('learner-trainq');
let rt: Running;
let learner: LearnerModule;
let queue: Queue;
const calls: string[] = [];
let release: (() => void) | undefined;
/** Every hold ever made, released on teardown (a failed assertion must not leave a job running). */
const holds: (() => void)[] = [];

before(async () => {
  rt = await startTest(prefix);
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  queue = learner.queues!.find((q) => q.name === TRAIN_QUEUE) as Queue;
  // The retrain of this test: records its start and is held open until the test releases it.
  learner.training.train = async (pipeline: string): Promise<TrainResult> => {
    calls.push(`start ${pipeline}`);
    await new Promise<void>((r) => {
      release = r;
      holds.push(r);
    });
    calls.push(`end ${pipeline}`);
    return { trained: false, reason: 'held by the test' };
  };
});
after(async () => {
  for (const r of holds) r();
  await rt.close();
  await dropPrefix(prefix);
});

describe('retrain queue', () => {
  it('a retrain asked for while one runs is queued (one at most) and runs after it', async () => {
    await learner.enqueueTrain('race');
    await eventually(() => calls.length === 1);
    assert.deepEqual(calls, ['start race']);
    const first = release!;
    release = undefined;
    // Asked for twice while the first runs: one waits (deduplicated with the other), none is dropped.
    await learner.enqueueTrain('race');
    await learner.enqueueTrain('race');
    await eventually(async () => (await queue.getWaitingCount()) === 1);
    assert.deepEqual(calls, ['start race'], 'the queued retrain does not start while the first runs');
    first();
    await eventually(() => calls.length === 3);
    assert.deepEqual(calls, ['start race', 'end race', 'start race'], 'the queued retrain ran after the first ended');
    assert.equal(await queue.getWaitingCount(), 0);
    release!();
    await eventually(() => calls.length === 4);
    // Nothing else was queued: the third request was deduplicated with the second.
    await eventually(async () => (await queue.getActiveCount()) === 0);
    assert.equal(await queue.getWaitingCount(), 0);
    assert.equal(calls.length, 4);
  });
});
