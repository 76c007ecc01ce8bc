import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { decisionSecond, newDecisionId, readDecision } from '../../src/allocation/decisions.js';
import { allocationModule } from '../../src/allocation/module.js';
import { servicesOf } from '../../src/kernel/module.js';
import { RedisClock } from '../../src/redis/clock.js';
import { createRedisClient } from '../../src/redis/connection.js';
import { CommitTimeoutError } from '../../src/redis/group-commit.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, REDIS_TARGET, startTest, testPrefix } from '../helpers/env.js';
import { fillWriteSlots, holdConnection, sampleRecord } from '../helpers/write-slots.js';

/**
 * Decision records dropped unsent are counted on /metrics (`apportion_decision_records_dropped_total`): a record
 * answered `recorded: false` stays queued for one of the store's write slots until its pending deadline, and one
 * still waiting when the deadline passes is never sent (docs/architecture.md, "The hot path"). Before, the group
 * committer counted them in a field nobody exported, so an operator could not see records lost this way.
 * Real Redis: the allocation module of a running server's process is built again on a connection of its own (no
 * command bound, unlike the server's, whose timed-out writes free their slots) whose sockets the test corks, as
 * record-deadline.test.ts does, so its four write slots stay busy; it reports into the server's metrics registry,
 * read over GET /metrics. Nothing is timed: the test waits for Redis's clock to pass the deadlines before it lets the
 * writes through. Checked to fail without the counter's increment (the metric stays 0).
 */
const prefix = testPrefix('record-dropped');

const record = sampleRecord;

let rt: Running;
let writer: Redis;
let reader: Redis;
let clock: RedisClock;

const hold = holdConnection;

const dropped = async (): Promise<number | undefined> => {
  const text = (await rt.app!.inject({ method: 'GET', url: '/metrics' })).body;
  const m = /^apportion_decision_records_dropped_total (\S+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
};

before(async () => {
  rt = await startTest(prefix, { workers: false });
  writer = createRedisClient(REDIS_TARGET, {});
  reader = createRedisClient(REDIS_TARGET, {});
  clock = new RedisClock({ redis: reader });
  await clock.sync();
});
after(async () => {
  writer?.disconnect();
  reader?.disconnect();
  await rt?.close();
  await dropPrefix(prefix);
});

describe('decision records dropped unsent are counted on /metrics', { timeout: 120_000 }, () => {
  it('records still waiting for a write slot when their pending deadline passes count in apportion_decision_records_dropped_total', async () => {
    const { decisions } = allocationModule({
      ...servicesOf(rt.core, ['redis', 'keys', 'view', 'kinds', 'metrics', 'log', 'store', 'snapshot'], ['rewardWindowSeconds', 'redisCommandTimeoutMs']),
      redis: writer,
      all: () => [],
      clock,
    });
    assert.equal(await dropped(), 0, 'the counter is exported from the start, at 0');
    // A record written with nothing held lands (the path works here; and the held writes below are then the record
    // scripts alone, their names already in the record dictionary).
    const control = newDecisionId();
    assert.equal(await decisions.write(record(control)), 'written');
    assert.ok(await readDecision(reader, rt.core.keys, control));
    const release = await hold(writer);
    let inFlight: string[] = [];
    let queued: string[] = [];
    let writes: Promise<unknown>[] = [];
    let deadline = 0;
    try {
      // Four writes in flight (the store's write slots); ten more wait for a slot, their writers stop waiting
      // (recorded: false) and they stay queued.
      const filled = await fillWriteSlots((r) => decisions.write(r));
      ({ inFlight, queued, writes } = filled);
      for (const w of filled.waits) assert.ok(w.status === 'rejected' && w.reason instanceof CommitTimeoutError, 'the writer stops waiting: recorded: false');
      assert.equal(await dropped(), 0, 'kept queued until their deadline: not dropped yet');
      // The pending deadline (decisions.ts): the end of the decision's second plus decisionPendingMs of the command
      // bound (at least 7 s), on Redis's clock. Redis "resumes" only once every one has passed.
      const pendingMs = Math.max(7000, 2 * rt.core.config.redisCommandTimeoutMs + 1000);
      deadline = Math.max(...[...inFlight, ...queued].map((id) => (decisionSecond(id)! + 1) * 1000 + pendingMs));
      await eventually(() => clock.now() > deadline + 50, 60_000);
    } finally {
      release();
    }
    // The held writes run past their deadline: Redis refuses them (they were sent: not dropped); the first slot freed
    // finds the queued records past theirs and drops them unsent.
    for (const w of await Promise.all(writes)) assert.ok(w instanceof CommitTimeoutError, "the held writes' writers stopped waiting too");
    const keys = rt.core.keys;
    // After what the writer sent for their buckets (a read on the same connection), nothing of any of them is there.
    for (const id of [...inFlight, ...queued]) await writer.hget(keys.decisionBucket(decisionSecond(id)!, keys.shardOf(id)), 'nothing');
    for (const id of [...inFlight, ...queued]) assert.equal(await readDecision(reader, keys, id), undefined, 'nothing of them is written');
    // Counted once a slot freed: the ten queued records, not the four held writes (they were sent, and refused).
    const counted = await eventually(async () => ((await dropped()) ?? 0) >= 10).then(
      () => dropped(),
      async () => assert.fail(`apportion_decision_records_dropped_total is ${await dropped()}, not 10`),
    );
    assert.equal(counted, 10);
  });
});
