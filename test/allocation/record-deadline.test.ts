import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { decisionSecond, DecisionStore, newDecisionId, PENDING_MARGIN_MS, readDecision } from '../../src/allocation/decisions.js';
import { AppError } from '../../src/errors/app-error.js';
import { OutcomeIntake } from '../../src/feedback/intake.js';
import { createOutcomesQueue, type OutcomeJobData } from '../../src/feedback/queue.js';
import { RedisClock } from '../../src/redis/clock.js';
import { createRedisClient } from '../../src/redis/connection.js';
import { CommitTimeoutError } from '../../src/redis/group-commit.js';
import { createKeys } from '../../src/redis/keys.js';
import { dropPrefix, eventually, ON_CLUSTER, REDIS_TARGET, testPrefix } from '../helpers/env.js';
import { fillWriteSlots, holdConnection, sampleRecord } from '../helpers/write-slots.js';

/**
 * The pending deadline of a decision record (docs/architecture.md, "The hot path"; docs/errors.md DECISION_PENDING):
 * a record whose writer stopped waiting (`recorded: false`) lands if and only if Redis writes it before its deadline
 * (the end of its second + `pendingMs`, on Redis's clock); outcome intake answers DECISION_PENDING until then (and a
 * margin) and DECISION_NOT_FOUND after, which is then final. Real Redis (or Redis Cluster): the writer's connection is
 * held by corking its sockets (every master's on a cluster), so the commands it writes reach Redis only when the test
 * uncorks them, as a stalled Redis answers them only when it resumes. Nothing is timed: the test waits for the clock
 * to pass a deadline, or for a record to be readable, before it looks.
 * Checked to fail before the change: the record held past its deadline landed when let through (and intake then
 * accepted its outcome after a 404); the records queued behind four held writes were dropped, never written.
 */
const prefix = testPrefix('record-deadline');
const keys = createKeys(prefix, { cluster: ON_CLUSTER });

const record = sampleRecord;

let writer: Redis;
let reader: Redis;
let queue: Queue<OutcomeJobData>;
let clock: RedisClock;

/** Holds every command the writer's connection sends until the returned function is called (in order). */
const hold = holdConnection;

/** The writer's store: waits 50 ms for a record (then the allocation would answer `recorded: false`). */
const writerStore = (pendingMs: number) => new DecisionStore(writer, keys, 3600, 50, { pendingMs, clock });
/** Intake reading through a connection of its own, with the same pending rule. */
const intakeFor = (pendingMs: number) => new OutcomeIntake(new DecisionStore(reader, keys, 3600, undefined, { pendingMs, clock }), queue, { batchMax: 10 });
const deadlineOf = (id: string, pendingMs: number) => (decisionSecond(id)! + 1) * 1000 + pendingMs;

async function outcomeCode(intake: OutcomeIntake, id: string): Promise<string> {
  try {
    await intake.accept({ decisionId: id, quality: 0.5 });
    return 'ACCEPTED';
  } catch (e) {
    if (e instanceof AppError) return e.code;
    throw e;
  }
}

/** Waits until the commands the writer sent for `id`'s bucket so far have run (a read after them on the same connection). */
async function drained(id: string): Promise<void> {
  await writer.hget(keys.decisionBucket(decisionSecond(id)!, keys.shardOf(id)), 'nothing');
}

before(async () => {
  writer = createRedisClient(REDIS_TARGET, {});
  reader = createRedisClient(REDIS_TARGET, { maxRetriesPerRequest: null });
  clock = new RedisClock({ redis: reader });
  await clock.sync();
  queue = createOutcomesQueue(reader, keys.bullPrefix());
});
after(async () => {
  await queue?.close();
  writer?.disconnect();
  reader?.disconnect();
  await dropPrefix(prefix);
});

describe('decision records: the pending deadline', { timeout: 120_000 }, () => {
  it('a record whose write is held past its deadline is never written; its outcome is 503 DECISION_PENDING, then 404 for good', async () => {
    const pendingMs = 1500;
    const store = writerStore(pendingMs);
    const intake = intakeFor(pendingMs);
    const id = newDecisionId();
    const release = await hold(writer);
    try {
      const write = store.write(record(id));
      await assert.rejects(write, CommitTimeoutError, 'the writer stops waiting: recorded: false');
      assert.ok(clock.now() < deadlineOf(id, pendingMs), 'precondition: before the deadline');
      assert.equal(await outcomeCode(intake, id), 'DECISION_PENDING');
      // Redis "resumes" only once its clock is past the record's deadline.
      await eventually(() => clock.now() > deadlineOf(id, pendingMs) + PENDING_MARGIN_MS + 50, 30_000);
    } finally {
      release();
    }
    await drained(id);
    assert.equal(await readDecision(reader, keys, id), undefined, 'a write that reached Redis after its deadline wrote nothing');
    assert.equal(await outcomeCode(intake, id), 'DECISION_NOT_FOUND');
    // Final: nothing of it is still queued or in flight, and the answer does not change.
    await drained(id);
    assert.equal(await readDecision(reader, keys, id), undefined);
    assert.equal(await outcomeCode(intake, id), 'DECISION_NOT_FOUND');
  });

  it('a record whose write is held less than its deadline lands, and its outcome, retried on 503, is accepted', async () => {
    const pendingMs = 20_000;
    const store = writerStore(pendingMs);
    const intake = intakeFor(pendingMs);
    const id = newDecisionId();
    const release = await hold(writer);
    try {
      await assert.rejects(store.write(record(id)), CommitTimeoutError, 'the writer stops waiting: recorded: false');
      assert.equal(await outcomeCode(intake, id), 'DECISION_PENDING');
      assert.ok(clock.now() < deadlineOf(id, pendingMs), 'precondition: Redis resumes before the deadline');
    } finally {
      release();
    }
    const code = await eventually(async () => {
      const c = await outcomeCode(intake, id);
      return c === 'DECISION_PENDING' ? undefined : c;
    });
    assert.equal(code, 'ACCEPTED');
    assert.ok(await readDecision(reader, keys, id));
  });

  it('ids a client chose (written only if free) follow the same rule; one older than its pending window must land before its writer is answered', async () => {
    const pendingMs = 1500;
    const store = writerStore(pendingMs);
    const intake = intakeFor(pendingMs);
    // A fresh id, as POST /v1/allocations with a decisionId or the SDK's POST /v1/decisions/batch write it.
    const fresh = newDecisionId();
    // An id made a minute ago (an SDK record synced late): its pending window is over before it is written.
    const old = newDecisionId(Date.now() - 60_000);
    const release = await hold(writer);
    try {
      await assert.rejects(store.write(record(fresh), { nx: true }), CommitTimeoutError);
      await assert.rejects(store.write(record(old), { nx: true }), CommitTimeoutError);
      assert.equal(await outcomeCode(intake, fresh), 'DECISION_PENDING');
      assert.equal(await outcomeCode(intake, old), 'DECISION_NOT_FOUND', 'its window passed before it was written');
      await eventually(() => clock.now() > deadlineOf(fresh, pendingMs) + PENDING_MARGIN_MS + 50, 30_000);
    } finally {
      release();
    }
    await drained(fresh);
    await drained(old);
    assert.equal(await readDecision(reader, keys, fresh), undefined, 'a write that reached Redis after its deadline wrote nothing');
    assert.equal(await readDecision(reader, keys, old), undefined, 'a write that reached Redis after its writer was answered wrote nothing');
    assert.equal(await outcomeCode(intake, fresh), 'DECISION_NOT_FOUND');
    assert.equal(await outcomeCode(intake, old), 'DECISION_NOT_FOUND');
    // Written in time, both land (the same scripts, nothing held; a writer that waits long enough for any machine).
    const patient = new DecisionStore(writer, keys, 3600, 20_000, { pendingMs, clock });
    const again = [newDecisionId(), newDecisionId(Date.now() - 60_000)];
    for (const id of again) assert.equal(await patient.write(record(id), { nx: true }), 'written');
    for (const id of again) assert.ok(await readDecision(reader, keys, id));
  });

  it('with every write slot busy, the records queued behind them are written when Redis answers again before their deadline', async () => {
    const pendingMs = 20_000;
    const store = writerStore(pendingMs);
    const release = await hold(writer);
    let filled: Awaited<ReturnType<typeof fillWriteSlots>>;
    try {
      // Four writes in flight (the store's write slots); ten more wait for a slot and their writers stop waiting.
      filled = await fillWriteSlots((r) => store.write(r));
      for (const w of filled.waits) assert.ok(w.status === 'rejected' && w.reason instanceof CommitTimeoutError, 'the writer stops waiting: recorded: false');
      assert.ok(filled.queued.every((id) => clock.now() < deadlineOf(id, pendingMs)), 'precondition: Redis resumes before the deadline');
    } finally {
      release();
    }
    const { inFlight, queued, writes } = filled;
    await Promise.allSettled(writes);
    for (const id of [...inFlight, ...queued]) {
      await eventually(async () => (await readDecision(reader, keys, id)) !== undefined, 30_000);
    }
  });
});
