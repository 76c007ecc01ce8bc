import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommitTimeoutError, GroupCommitter } from '../../src/redis/group-commit.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('GroupCommitter', () => {
  it('writes a lone item alone, on the next turn of the event loop', async () => {
    const writes: number[][] = [];
    const g = new GroupCommitter<number>(async (xs) => void writes.push([...xs]), { maxBatch: 10, maxInFlight: 1 });
    await g.submit(1);
    await g.submit(2);
    assert.deepEqual(writes, [[1], [2]]);
  });

  it('items submitted while a write is in flight share the next write, up to maxBatch', async () => {
    const writes: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const g = new GroupCommitter<number>(
      async (xs) => {
        writes.push([...xs]);
        if (writes.length === 1) await gate;
      },
      { maxBatch: 3, maxInFlight: 1 },
    );
    const first = g.submit(0);
    await tick();
    const rest = [1, 2, 3, 4, 5, 6, 7].map((i) => g.submit(i));
    await tick();
    assert.deepEqual(writes, [[0]], 'nothing else is written while the only write slot is busy');
    assert.equal(g.backlog, 7);
    release();
    await Promise.all([first, ...rest]);
    assert.deepEqual(writes, [[0], [1, 2, 3], [4, 5, 6], [7]]);
    assert.equal(g.writes, 4);
    assert.equal(g.items, 8);
  });

  it('a failed write rejects every item of its batch and no other', async () => {
    const g = new GroupCommitter<number>(
      async (xs) => {
        if (xs.includes(13)) throw new Error('redis down');
      },
      { maxBatch: 2, maxInFlight: 1 },
    );
    const settled = await Promise.allSettled([12, 13, 14].map((i) => g.submit(i)));
    assert.deepEqual(
      settled.map((s) => s.status),
      ['rejected', 'rejected', 'fulfilled'],
    );
  });

  it('a write that throws synchronously rejects its batch and frees its slot', async () => {
    let calls = 0;
    const g = new GroupCommitter<number>(
      (xs) => {
        calls++;
        if (xs[0] === 1) throw new Error('sync');
        return Promise.resolve();
      },
      { maxBatch: 1, maxInFlight: 1 },
    );
    await assert.rejects(g.submit(1), /sync/);
    await g.submit(2);
    assert.equal(calls, 2);
  });

  it('reports each item dropped unsent to onDrop, whether dropped when its wait ran out or when kept until its keepUntil', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const written: number[] = [];
    const onDrop: number[] = [];
    let now = 0;
    const g = new GroupCommitter<number>(
      async (xs) => {
        written.push(...xs);
        if (xs.includes(0)) await gate;
      },
      // Items 10+ stay queued until t = 100 on the test's clock; the others are dropped as soon as their wait runs out.
      { maxBatch: 10, maxInFlight: 1, itemTimeoutMs: 1, keepUntil: (x) => (x >= 10 ? 100 : 0), clock: () => now, onDrop: (x) => onDrop.push(x) },
    );
    const first = g.submit(0).catch((e: unknown) => e);
    await tick();
    assert.deepEqual(written, [0], 'the only write slot is busy');
    const waits = await Promise.allSettled([1, 2, 10, 11].map((x) => g.submit(x)));
    assert.ok(waits.every((w) => w.status === 'rejected' && w.reason instanceof CommitTimeoutError));
    assert.deepEqual(onDrop, [1, 2], 'dropped when their wait ran out');
    assert.equal(g.backlog, 2, '10 and 11 stay queued');
    now = 100; // past their keepUntil before the slot frees
    release();
    await first;
    await tick();
    assert.deepEqual(onDrop, [1, 2, 10, 11]);
    assert.equal(g.dropped, 4);
    assert.deepEqual(written, [0], 'nothing dropped was written');
  });

  it('rejects nonsensical options', () => {
    assert.throws(() => new GroupCommitter<number>(async () => undefined, { maxBatch: 0, maxInFlight: 1 }), RangeError);
  });
});
