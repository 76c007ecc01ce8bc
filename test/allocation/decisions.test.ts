import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { decisionSecond, DecisionStore, newDecisionId, readDecisionJsons, type DecisionRecord } from '../../src/allocation/decisions.js';
import { createKeys } from '../../src/redis/keys.js';
import { testPrefix, testRedis } from '../helpers/env.js';
import { sampleRecord } from '../helpers/write-slots.js';

const prefix = testPrefix('decisions');
const keys = createKeys(prefix);
const redis = testRedis(prefix, { enableAutoPipelining: true });

const record = (id: string, i = 0): DecisionRecord => ({
  ...sampleRecord(id),
  budgets: { a: 100 + i, b: 200 },
  totalTokens: 300 + i,
  features: { note: 'quotes " and raw \u001e\u001f control characters survive', i },
});

describe('decision records', () => {
  it('ids carry the second they were made in; bare UUIDs (older ids) carry none', () => {
    const now = Date.UTC(2026, 10, 23, 4, 0, 0);
    const id = newDecisionId(now);
    assert.match(id, /^[0-9a-z]{6}-[0-9a-f-]{36}$/);
    assert.equal(decisionSecond(id), now / 1000);
    assert.match(id, new RegExp('^[A-Za-z0-9_-]{16,64}$'));
    assert.equal(decisionSecond(randomUUID()), undefined);
    assert.equal(decisionSecond('zzzzzz-nonsense-but-long-enough'), undefined, 'a prefix outside plausible seconds is not a time');
  });

  it('writes every record of a burst, in the bucket of its second, expiring after the reward window', async () => {
    const store = new DecisionStore(redis, keys, 3600);
    const ids = Array.from({ length: 300 }, () => newDecisionId());
    await Promise.all(ids.map((id, i) => store.write(record(id, i))));
    for (const [i, id] of ids.entries()) {
      const r = await store.read(id);
      assert.deepEqual({ ...r, ts: 0 }, { ...record(id, i), ts: 0 });
    }
    const sec = decisionSecond(ids[0]!)!;
    const ttl = await redis.ttl(keys.decisionBucket(sec));
    assert.ok(ttl > 3590 && ttl <= 3602, `bucket TTL ${ttl}`);
    assert.equal(await store.read(newDecisionId()), undefined, 'an unknown id in an existing bucket is not found');
  });

  it('reads many records at once, in the order asked, across buckets and missing ids', async () => {
    const store = new DecisionStore(redis, keys, 3600);
    const now = Date.now();
    const fresh = [newDecisionId(now), newDecisionId(now - 5000), newDecisionId(now), newDecisionId(now - 5000)];
    await Promise.all(fresh.map((id, i) => store.write(record(id, i))));
    const missing = [newDecisionId(now), randomUUID()];
    const ids = [fresh[0]!, missing[0]!, fresh[2]!, fresh[1]!, missing[1]!, fresh[3]!];
    const got = await readDecisionJsons(redis, keys, ids);
    assert.equal(got.length, ids.length);
    assert.deepEqual(
      got.map((j) => (j ? (JSON.parse(j) as DecisionRecord).id : null)),
      ids.map((id) => (missing.includes(id) ? null : id)),
    );
    assert.equal((JSON.parse(got[2]!) as DecisionRecord).totalTokens, 302);
    assert.deepEqual(await readDecisionJsons(redis, keys, []), []);
  });
});
