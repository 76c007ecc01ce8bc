import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Queue } from 'bullmq';
import { budgetKeys } from '../../src/budgets/keys.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/**
 * A job scheduler whose next iteration BullMQ failed to schedule (its worker writes it after taking the current one;
 * on an error other than a refused connection — a command timeout while Redis stalls, LOADING after a restart — it
 * logs "the next repeatable job will not be scheduled") never ran again: the reservation sweeper stopped returning
 * expired holds until the process restarted. A worker process now upserts its schedulers again every
 * APPORTION_SCHEDULER_REFRESH_MS. The dropped iteration is made here the way it is left: the scheduler is there, no job
 * of it is pending and none is active.
 */
const prefix = testPrefix('scheduler-refresh');
let rt: Running;
let queue: Queue;

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_RESERVATION_SWEEP_MS: '200', APPORTION_SCHEDULER_REFRESH_MS: '2000' });
  queue = rt.modules.find((m) => m.name === 'budgets')!.queues![0]!;
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

const call = async (method: 'PUT' | 'POST' | 'GET', url: string, payload?: object) => {
  const res = await rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });
  assert.ok(res.statusCode < 300, `${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json();
};

/**
 * Removes the sweeper's pending iteration while none runs: the state a failed next-iteration write leaves (the
 * scheduler's record stays; its delayed job is gone). The queue is paused first, so no worker takes an iteration (and
 * writes the next) meanwhile; the job is removed straight from Redis, as BullMQ refuses to remove a scheduler's job.
 */
async function dropIteration(): Promise<void> {
  const ours = (ids: string[]) => ids.filter((id) => id.startsWith('repeat:sweep-reservations:'));
  const pending = async () => ours([...(await rt.core.redis.lrange(queue.toKey('wait'), '0', '-1')), ...(await rt.core.redis.lrange(queue.toKey('paused'), '0', '-1')), ...(await rt.core.redis.zrange(queue.toKey('delayed'), '0', '-1'))]);
  await queue.pause();
  await eventually(async () => (await queue.getActiveCount()) === 0, 30_000, 20);
  // The refresh may write the iteration again between two reads: removed until a read finds none (that read is the
  // one checked: a refresh right after it, before the check, once failed a run that checked with a read of its own).
  let left = await pending();
  for (let tries = 0; tries < 20 && left.length > 0; tries++) {
    for (const id of left) {
      for (const list of ['wait', 'paused']) await rt.core.redis.lrem(queue.toKey(list), 0, id);
      await rt.core.redis.zrem(queue.toKey('delayed'), id);
      await rt.core.redis.del(queue.toKey(id));
    }
    left = await pending();
  }
  assert.deepEqual(left, [], 'no iteration pending');
  await queue.resume();
}

describe('job schedulers are upserted again while the workers run', () => {
  it('the sweeper returns an expired hold after its scheduled iteration was lost', async () => {
    await call('PUT', '/v1/budgets', { scope: 'tenant:sr', unit: 'TOKENS', allocated: 100 });
    const deadlines = budgetKeys(rt.core.keys.prefix).deadlines('sr');
    await dropIteration();
    assert.ok((await queue.getJobSchedulers()).some((s) => s.key === 'sweep-reservations' || s.id === 'sweep-reservations'), 'the scheduler itself is still there');
    const g = await call('POST', '/v1/reservations', { scope: 'tenant:sr', unit: 'TOKENS', amount: 60, ttlMs: 300, idempotencyKey: 'sr-1' });
    assert.equal(await rt.core.redis.zcard(deadlines), 1);
    const before = (await rt.core.metrics.reservationsExpired.get()).values[0]?.value ?? 0;
    // Not touched again: only the sweeper can return it.
    await eventually(async () => (await rt.core.redis.zcard(deadlines)) === 0, 30_000, 100);
    assert.ok(((await rt.core.metrics.reservationsExpired.get()).values[0]?.value ?? 0) > before, 'expired by the sweeper');
    const balance = await call('GET', `/v1/reservations/${encodeURIComponent(g.id)}`);
    assert.equal(balance.state, 'EXPIRED');
    // One pending iteration again, not one per refresh.
    const pending = (await queue.getJobs(['delayed', 'wait', 'prioritized'])).filter((j) => j?.id?.startsWith('repeat:sweep-reservations:'));
    assert.ok(pending.length <= 1, `${pending.length} pending iterations`);
  });
});
