import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { keptWindows, readWindow } from '../../src/learner/train-process.js';
import { REDIS_URL, testPrefix, testRedis } from '../helpers/env.js';

const prefix = testPrefix('read-window');
const redis = testRedis(prefix);

let seq = 0;
const event = (): string => {
  const ev: LoggedEvent = { id: `e${++seq}`, t: seq, s: 's', f: { n: seq }, T: 100, b: { a: 50, b: 50 }, q: 0.5, c: null };
  return JSON.stringify(ev);
};
/** What the ingest and default scripts do: LPUSH new events, LTRIM to the cap. */
async function push(key: string, n: number, cap = 100_000): Promise<void> {
  const items = Array.from({ length: n }, event);
  for (let i = 0; i < items.length; i += 1000) await redis.lpush(key, ...items.slice(i, i + 1000));
  await redis.ltrim(key, 0, cap - 1);
}
/** The newest `window` events as a full read gives them. */
async function truth(key: string, window: number): Promise<string[]> {
  return (await redis.lrange(key, 0, window - 1)).map((r) => (JSON.parse(r) as LoggedEvent).id);
}
const ids = (evs: readonly LoggedEvent[]) => evs.map((e) => e.id);

describe('trainer buffer reads (readWindow)', () => {
  it('fetches only what was pushed since the previous read, and returns the same window a full read would', async () => {
    const key = `${prefix}:{pipeline:a}:buffer`;
    await push(key, 1200);
    const first = await readWindow(redis, REDIS_URL, key, 1000);
    assert.equal(first.fetched, 1000);
    assert.deepEqual(ids(first.events), await truth(key, 1000));

    await push(key, 37);
    const second = await readWindow(redis, REDIS_URL, key, 1000);
    assert.equal(second.fetched, 37);
    assert.deepEqual(ids(second.events), await truth(key, 1000));

    const again = await readWindow(redis, REDIS_URL, key, 1000);
    assert.equal(again.fetched, 0, 'nothing new: nothing fetched');
    assert.deepEqual(ids(again.events), await truth(key, 1000));

    // Across a page boundary (pages of 500), with the cap trimming the tail.
    await push(key, 730, 1500);
    const third = await readWindow(redis, REDIS_URL, key, 1000);
    assert.equal(third.fetched, 730);
    assert.deepEqual(ids(third.events), await truth(key, 1000));
  });

  it('reads the whole window again when more than a window arrived, when the window changes, and when the buffer was rewritten', async () => {
    const key = `${prefix}:{pipeline:b}:buffer`;
    await push(key, 300);
    assert.equal((await readWindow(redis, REDIS_URL, key, 200)).fetched, 200);

    await push(key, 250); // more than the window: the previous newest is no longer within it
    const flood = await readWindow(redis, REDIS_URL, key, 200);
    assert.equal(flood.fetched, 200);
    assert.deepEqual(ids(flood.events), await truth(key, 200));

    const wider = await readWindow(redis, REDIS_URL, key, 400);
    assert.equal(wider.fetched, 400, 'another window: a full read');
    assert.deepEqual(ids(wider.events), await truth(key, 400));

    // Deleted and refilled with fewer events, the old newest entry among them (a replayed fixture).
    const newest = (await redis.lrange(key, 0, 0))[0]!;
    await redis.del(key);
    await push(key, 10);
    await redis.lpush(key, newest);
    await push(key, 5);
    const rewritten = await readWindow(redis, REDIS_URL, key, 400);
    assert.equal(rewritten.fetched, 16);
    assert.deepEqual(ids(rewritten.events), await truth(key, 400));

    await redis.del(key);
    const empty = await readWindow(redis, REDIS_URL, key, 400);
    assert.deepEqual(empty, { events: [], fetched: 0 });
  });
  it('keeps the reads of at most keptMax events over all buffers, the least recently read dropped first, and reads a dropped buffer whole again', async () => {
    const keys = [0, 1, 2, 3].map((i) => `${prefix}:{pipeline:lru${i}}:buffer`);
    for (const k of keys) await push(k, 300);
    // 250 events a read, at most 600 kept (the earlier tests' reads are older still, so they go first): two reads
    // fit, a third drops the oldest.
    for (const k of keys.slice(0, 3)) await readWindow(redis, REDIS_URL, k, 250, 600);
    assert.deepEqual(keptWindows(), { buffers: 2, events: 500 });
    // lru0 was read first: dropped, so its next read fetches the whole window; lru2 (the newest) is kept.
    assert.equal((await readWindow(redis, REDIS_URL, keys[2]!, 250, 600)).fetched, 0);
    const again = await readWindow(redis, REDIS_URL, keys[0]!, 250, 600);
    assert.equal(again.fetched, 250);
    assert.deepEqual(ids(again.events), await truth(keys[0]!, 250));
    // A single read larger than the bound is still kept (the newest read always stays).
    await readWindow(redis, REDIS_URL, keys[3]!, 300, 1);
    assert.equal((await readWindow(redis, REDIS_URL, keys[3]!, 300, 1)).fetched, 0);
    assert.equal(keptWindows().buffers, 1);
    await redis.del(...keys);
  });
});
