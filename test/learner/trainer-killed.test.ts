/**
 * The trainer child killed while it trains (SIGKILL: an operator, the OOM killer): the retrain fails with an error that
 * names the signal (it said "exited with code null"), and the next retrain starts a new trainer and runs.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights, serializeWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runTrainJob, stopTrainer, trainerStatus, type TrainJobInput } from '../../src/learner/train-process.js';
import { dropPrefix, eventually, REDIS_URL, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('trainer-killed');
const enc = compileFeatures([{ name: 'n', type: 'numeric' }]);
const input: TrainJobInput = {
  redisUrl: REDIS_URL,
  bufferKey: `${prefix}:{pipeline:p}:learner:buffer`,
  window: 100,
  features: [{ name: 'n', type: 'numeric' }],
  agents: ['a', 'b'],
  costWeight: 0,
  init: serializeWeights(initialWeights(enc.dim, 2, 1000, mulberry32(1))),
  seed: 1,
};

after(async () => {
  stopTrainer();
  await dropPrefix(prefix);
});

describe('a trainer child killed during a retrain', () => {
  it('fails that retrain naming the signal; the next retrain gets a new trainer', async () => {
    // Held before it trains (every nice value is ≥ −20): the job is running in the child when it is killed.
    const held = runTrainJob({ ...input, holdWhile: { niceAtLeast: -20 } });
    const pid = await eventually(() => trainerStatus()?.pid);
    process.kill(pid, 'SIGKILL');
    await assert.rejects(held, /training process was killed by signal SIGKILL/);

    const next = await runTrainJob(input);
    assert.equal(typeof next.trained, 'boolean');
    const again = trainerStatus()?.pid;
    assert.ok(again !== undefined && again !== pid, 'a new trainer child');
  });
});
