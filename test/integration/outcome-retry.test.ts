import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createOutcomesQueue, DEFAULT_JOB_RETENTION, DEFAULT_RETRY_SPAN_MS, OUTCOME_BACKOFF_CAP_MS, outcomeAttempts, outcomeRetryDelay, outcomeWorkerSettings } from '../../src/feedback/queue.js';
import { dropPrefix, eventually, REDIS_URL, testPrefix } from '../helpers/env.js';

/**
 * An accepted outcome's job is retried for as long as its outcomes can still be applied (the reward window plus the
 * applied-markers' grace), not given up after a minute. Until 2026-12-03 a job had 8 attempts with exponential backoff
 * from 500 ms: 63.5 s of retries in all, after which an outcome answered 202 stayed in BullMQ's failed set, never
 * applied — a Redis node unreachable for longer than that lost every outcome accepted meanwhile. Real BullMQ on the
 * real Redis, under this file's own prefix.
 */
const prefix = testPrefix('outcome-retry');
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
after(async () => {
  redis.disconnect();
  await dropPrefix(prefix);
});

describe('outcome job retries', () => {
  it('the schedule doubles from 500 ms up to its cap and covers the whole span', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => outcomeRetryDelay(n)), [500, 1000, 2000, 4000, 8000, 16000, 30000]);
    assert.equal(outcomeRetryDelay(1000), OUTCOME_BACKOFF_CAP_MS);
    for (const span of [60_000, 3_600_000, DEFAULT_RETRY_SPAN_MS, 31 * 86_400_000]) {
      const attempts = outcomeAttempts(span);
      let waited = 0;
      for (let n = 1; n < attempts; n++) waited += outcomeRetryDelay(n);
      assert.ok(waited >= span, `${attempts} attempts wait ${waited} ms, span ${span}`);
      assert.ok(waited - outcomeRetryDelay(attempts - 1) < span, 'no more attempts than the span needs');
    }
    // The old schedule, for the record: 8 attempts, 63.5 s.
    let old = 0;
    for (let n = 1; n < 8; n++) old += 500 * 2 ** (n - 1);
    assert.equal(old, 63_500);
    assert.ok(outcomeAttempts(DEFAULT_RETRY_SPAN_MS) > 3000);
  });

  it('a job that fails more often than the old 8 attempts is still applied (real BullMQ)', async () => {
    const bull = `${prefix}:bull`;
    // A small cap and span so the test takes a second: the same functions the feedback module uses, scaled down.
    const queue = createOutcomesQueue(redis, bull, DEFAULT_JOB_RETENTION, { spanMs: 2000, capMs: 20 });
    const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    let runs = 0;
    const worker = new Worker(
      'outcomes',
      async () => {
        runs++;
        if (runs <= 12) throw new Error(`the worker's Redis is unreachable (run ${runs})`);
      },
      { connection: conn, prefix: bull, settings: outcomeWorkerSettings(20) },
    );
    try {
      const job = await queue.add('outcomes', { outcomes: [] });
      assert.equal(job.opts.attempts, outcomeAttempts(2000, 20));
      assert.ok(job.opts.attempts! > 12);
      await eventually(async () => (await queue.getJob(job.id!))?.finishedOn !== undefined, 30_000);
      const done = await queue.getJob(job.id!);
      assert.equal(await done!.getState(), 'completed', `failed reason: ${done!.failedReason}`);
      assert.equal(runs, 13, 'twelve failures, then applied');
    } finally {
      await worker.close();
      await queue.close();
      conn.disconnect();
    }
  });
});
