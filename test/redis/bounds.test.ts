/**
 * The bounds on request-path Redis calls: the connection's command timeout, caller deadlines and group-commit
 * item timeouts fail a call Redis did not answer, and do not fail one whose answer arrived while this process's
 * event loop was busy (the check runs after the poll phase has read the replies).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { connectRedis } from '../../src/redis/connection.js';
import { DeadlineError, withDeadline } from '../../src/redis/deadline.js';
import { CommitTimeoutError, GroupCommitter } from '../../src/redis/group-commit.js';
import { REDIS_URL } from '../helpers/env.js';
import { PrivateRedis } from '../helpers/private-redis.js';

/** Keeps the event loop busy (no I/O callbacks, no timers) for `ms`. */
function block(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* busy */
  }
}

let shared: Redis;
before(async () => {
  shared = await connectRedis(REDIS_URL, { name: 'bounds-test', commandTimeoutMs: 200 });
});
after(() => shared.disconnect());

test('an answer that arrived while the event loop was blocked past the bound is taken, not timed out', async () => {
  for (let i = 0; i < 5; i++) {
    const pong = shared.ping();
    const viaDeadline = withDeadline(shared.ping(), 200, 'ping');
    // Let the auto-pipelined commands go out (they are written on the next tick), then keep the loop blocked for
    // twice the bound: Redis answers within a millisecond, and the answers wait in the socket.
    await new Promise((r) => setImmediate(r));
    block(400);
    assert.equal(await pong, 'PONG');
    assert.equal(await viaDeadline, 'PONG');
  }
});

test('a stalled Redis fails commands, pipelines and caller deadlines instead of hanging; they work again after', async () => {
  const redis = await PrivateRedis.start({ aof: false });
  const conn = await connectRedis(redis.url, { name: 'bounds-stall', commandTimeoutMs: 200 });
  try {
    await conn.set('k', 'v');
    redis.pause();
    try {
      await assert.rejects(conn.get('k'), /Command timed out/);
      await assert.rejects(conn.multi().get('k').incr('n').exec(), /Command timed out/);
      await assert.rejects(withDeadline(conn.get('k'), 100, 'read'), DeadlineError);
    } finally {
      redis.resume();
    }
    assert.equal(await conn.get('k'), 'v');
  } finally {
    conn.disconnect();
    await redis.stop();
  }
});

test('group commit: an item past its timeout is rejected, and never written if it was still waiting for a slot', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 3 }), async (n, maxBatch) => {
      const written: number[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      // One write slot, held until the gate opens: the first batch is in flight, the rest wait for the slot.
      const committer = new GroupCommitter<number>(
        async (items) => {
          await gate;
          written.push(...items);
        },
        { maxBatch, maxInFlight: 1, itemTimeoutMs: 30 },
      );
      const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => committer.submit(i)));
      for (const r of results) assert.ok(r.status === 'rejected' && r.reason instanceof CommitTimeoutError);
      release();
      await new Promise((r) => setTimeout(r, 10));
      // Only the batch already sent may still land (the caller was told "not acknowledged", never "not written").
      assert.deepEqual(written, Array.from({ length: Math.min(n, maxBatch) }, (_, i) => i));
      assert.equal(committer.backlog, 0);
    }),
    { numRuns: 25 },
  );
});
