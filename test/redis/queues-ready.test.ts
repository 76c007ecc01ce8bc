import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queuesReady } from '../../src/redis/queues-ready.js';
import { PrivateRedis } from '../helpers/private-redis.js';

/** A queue made while its Redis is stalled past the command timeout, on a Redis of the file's own (SIGSTOP). */
describe('start-up refuses a job queue whose one check of Redis failed', () => {
  let redis: PrivateRedis;
  const conns: Redis[] = [];
  const queues: Queue[] = [];
  // The stalled queue's connection times out after 300 ms; the healthy one's after 10 s, so that a busy machine's
  // slow answer is not taken for a stall.
  const connect = (commandTimeout: number) => {
    const c = new Redis(redis.url, { commandTimeout, maxRetriesPerRequest: null });
    conns.push(c);
    return c;
  };
  before(async () => {
    redis = await PrivateRedis.start({ aof: false });
  });
  after(async () => {
    redis.resume();
    for (const q of queues) await q.close().catch(() => undefined);
    for (const c of conns) c.disconnect();
    await redis.stop();
  });

  it('a healthy queue passes; one made during a stall keeps refusing jobs after Redis answers again, and start-up names it', async () => {
    const healthy = new Queue('healthy', { connection: connect(10_000), prefix: 'qr' });
    queues.push(healthy);
    await queuesReady([healthy]);

    const conn = connect(300);
    await conn.ping(); // connected: only the queue's version check meets the stall
    redis.pause();
    const stalled = new Queue('outcomes', { connection: conn, prefix: 'qr' });
    stalled.on('error', () => undefined);
    queues.push(stalled);
    await assert.rejects(stalled.waitUntilReady());
    redis.resume();
    // Redis answers again on the same connection… (within a few tries: on a busy machine the resumed server may
    // take longer than the 300 ms timeout to work through what queued up while it was stopped)
    let pong: string | undefined;
    for (let i = 0; i < 50 && pong === undefined; i++) pong = await conn.ping().catch(() => undefined);
    assert.equal(pong, 'PONG');
    await assert.rejects(stalled.add('j', {})); // …and BullMQ still refuses every job of that queue
    await assert.rejects(queuesReady([healthy, stalled]), (e: Error) => {
      assert.match(e.message, /job queue outcomes \(/);
      assert.doesNotMatch(e.message, /healthy/);
      assert.match(e.message, /APPORTION_REDIS_COMMAND_TIMEOUT_MS/);
      return true;
    });
  });
});
