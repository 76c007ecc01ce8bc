import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { DecisionStore, newDecisionId, readDecisionJson, readDecisions, type DecisionRecord } from '../../src/allocation/decisions.js';
import { bucketField, decodeInline, encodeInline, PRUNE_MARGIN_MS, RecordDictionary } from '../../src/allocation/record-codec.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';
import { REDIS_URL, testPrefix, testRedis } from '../helpers/env.js';

const prefix = testPrefix('record-codec');
const keys = createKeys(prefix);
const redis = testRedis(prefix, { enableAutoPipelining: true });

/** A decision record drawn from a seed: every optional field present or not, odd feature values and names. */
function generated(seed: number, id = newDecisionId(Date.now() - Math.floor(mulberry32(seed)() * 60_000))): DecisionRecord {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const agents = ['orchestrator', 'retriever', 'reasoner', 'validator', 'formatter', 'é-agent', '0'].slice(0, 1 + Math.floor(rnd() * 7));
  const budgets = Object.fromEntries(agents.map((a) => [a, Math.floor(rnd() * 20_000)]));
  const featureNames = ['messageCount', 'documentTokens', 'taskType', 'flag', 'none', 'quote"s \u001e\u001f', '1'].filter(() => rnd() < 0.6);
  const values = [() => Math.floor(rnd() * 1e6), () => rnd() * 1e3 - 500, () => pick(['refund', 'technical', '', 'ünï']), () => rnd() < 0.5, () => null];
  const features = Object.fromEntries(featureNames.map((f) => [f, pick(values)()]));
  const ts = (Number.parseInt(id.slice(0, id.indexOf('-')), 36) || Math.floor(Date.now() / 1000)) * 1000 + Math.floor(rnd() * 999);
  const P = [rnd(), rnd(), rnd()];
  return {
    id,
    pipeline: pick(['support-triage', 'p', 'pipé']),
    pipelineVersion: 1 + Math.floor(rnd() * 5),
    strategy: pick(['support-estimate', 'learned', '@uniform']),
    strategyVersion: 1 + Math.floor(rnd() * 9),
    strategyKind: pick(['estimate', 'learned', 'uniform']),
    reason: pick(['default', 'experiment', 'fallback', 'holdout']),
    budgets,
    totalTokens: Math.floor(rnd() * 100_000),
    features,
    ...(rnd() < 0.3 ? { unitKey: `user-${Math.floor(rnd() * 1000)}` } : {}),
    ts,
    ...(rnd() < 0.4 ? { route: { experiment: 'e1', variant: pick(['control', 'v1']), phase: 2 } } : {}),
    ...(rnd() < 0.5 ? { meta: { learner: { m: 3, k: 1, p: P[1]!, g: [100, 200], d: -0.25, P, w: 1 } } } : {}),
    ...(rnd() < 0.2 ? { shadow: { learner: { other: { b: [1, 2, 3] } } } } : {}),
    ...(rnd() < 0.3 ? { routing: { q: 0.9, alt: [{ s: 'x', q: 0.1, b: [1, 2], l: { m: 1 } }] } } : {}),
  };
}

describe('compact decision records', () => {
  it('round-trips generated records exactly (same fields, same key order) through the self-contained form', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = generated(seed);
      const back = decodeInline(r.id, encodeInline(r));
      assert.equal(JSON.stringify(back), JSON.stringify(r), `seed ${seed}`);
    }
  });

  it('round-trips through the store (dictionary form), one HMGET per bucket, and through the JSON reader', async () => {
    const store = new DecisionStore(redis, keys, 3600);
    const records = Array.from({ length: 200 }, (_, i) => generated(1000 + i));
    await Promise.all(records.map((r) => store.write(r)));
    const back = await readDecisions(redis, keys, records.map((r) => r.id));
    records.forEach((r, i) => assert.equal(JSON.stringify(back[i]), JSON.stringify(r), `record ${i}`));
    assert.equal(await readDecisionJson(redis, keys, records[7]!.id), JSON.stringify(records[7]));
    // A fresh reader (another process) fetches the dictionary entries it lacks.
    const other = new Redis(REDIS_URL);
    try {
      const again = await readDecisions(other, keys, records.map((r) => r.id));
      records.forEach((r, i) => assert.equal(JSON.stringify(again[i]), JSON.stringify(r), `fresh reader, record ${i}`));
    } finally {
      other.disconnect();
    }
  });

  it('decodes the documented layout written by hand (self-contained form 2)', () => {
    const id = 'sxq0ww-0b7c7e4e-2f4d-4a53-9d7e-5d2f3c7a1b90';
    const sec = Number.parseInt('sxq0ww', 36);
    const packed = new Packr({ useRecords: false }).pack([
      2,
      ['support-triage', 3, 'support-estimate', 2, 'estimate', 'default', ['orchestrator', 'reasoner'], ['messageCount', 'taskType']],
      [1200, 5400],
      8000,
      [12, 'refund'],
      250,
      null,
      { experiment: 'e', variant: 'v1' },
    ]);
    assert.deepEqual(decodeInline(id, packed), {
      id,
      pipeline: 'support-triage',
      pipelineVersion: 3,
      strategy: 'support-estimate',
      strategyVersion: 2,
      strategyKind: 'estimate',
      reason: 'default',
      budgets: { orchestrator: 1200, reasoner: 5400 },
      totalTokens: 8000,
      features: { messageCount: 12, taskType: 'refund' },
      ts: sec * 1000 + 250,
      route: { experiment: 'e', variant: 'v1' },
    });
  });

  it('stores a record under the 16 bytes of its UUID; other id forms under the id', () => {
    const id = newDecisionId();
    const f = bucketField(id);
    assert.ok(Buffer.isBuffer(f) && f.length === 16);
    assert.equal(f.toString('hex'), id.slice(id.indexOf('-') + 1).replaceAll('-', ''));
    assert.equal(bucketField('abcdefg-not-a-uuid-but-an-id'), 'abcdefg-not-a-uuid-but-an-id');
    assert.equal(bucketField(id.toUpperCase()), id.toUpperCase());
  });

  it('reads ids of other forms (a client’s own time-prefixed id, stored under the id itself)', async () => {
    const store = new DecisionStore(redis, keys, 3600);
    const odd = generated(6, `${Math.floor(Date.now() / 1000).toString(36)}-custom_id_from_a_client`);
    await store.write(odd);
    assert.equal(JSON.stringify(await store.read(odd.id)), JSON.stringify(odd));
  });

  it('a dictionary ref taken by other names (a hash collision) is not reused: those records carry their names', async () => {
    const own = createKeys(`${prefix}:collide`);
    const r = generated(42);
    const names = JSON.stringify([r.pipeline, r.pipelineVersion, r.strategy, r.strategyVersion, r.strategyKind, r.reason, Object.keys(r.budgets), Object.keys(r.features)]);
    const ref = createHash('sha1').update(names).digest().readUInt32BE(0);
    const dictKey = RecordDictionary.for(redis, own).key;
    await redis.hset(dictKey, String(ref), JSON.stringify(['someone', 1, 'else', 1, 'uniform', 'default', ['a'], []]));
    const store = new DecisionStore(redis, own, 3600);
    await store.write(r);
    assert.equal(JSON.stringify(await store.read(r.id)), JSON.stringify(r));
    const sec = Number.parseInt(r.id.slice(0, r.id.indexOf('-')), 36);
    const raw = (await redis.hgetBuffer(own.decisionBucket(sec), bucketField(r.id)))!;
    assert.equal(raw[1], 2, 'the stored record is the self-contained form');
    assert.equal(JSON.stringify(decodeInline(r.id, raw)), JSON.stringify(r));
    assert.equal(await redis.hget(dictKey, String(ref)), JSON.stringify(['someone', 1, 'else', 1, 'uniform', 'default', ['a'], []]), 'the other entry is untouched');
  });

  it('drops dictionary entries no record can refer to any more, keeps those in use (and adopts entries without a stamp)', async () => {
    const own = createKeys(`${prefix}:prune`);
    const ttl = 60;
    const store = new DecisionStore(redis, own, ttl);
    const dict = RecordDictionary.for(redis, own);
    const idle = { ...generated(7), pipeline: 'idle-pipeline' };
    const busy = { ...generated(8), pipeline: 'busy-pipeline' };
    await store.write(idle);
    await store.write(busy);
    const refOf = (r: DecisionRecord) => String(createHash('sha1').update(JSON.stringify([r.pipeline, r.pipelineVersion, r.strategy, r.strategyVersion, r.strategyKind, r.reason, Object.keys(r.budgets), Object.keys(r.features)])).digest().readUInt32BE(0));
    assert.deepEqual((await redis.hkeys(dict.key)).sort(), [refOf(idle), refOf(busy)].sort());
    // The idle tuple was last confirmed longer ago than a record lives plus the margin; an entry written before stamps existed has none.
    const [s, us] = await redis.time();
    const nowMs = Number(s) * 1000 + Math.floor(Number(us) / 1000);
    await redis.zadd(dict.seenKey, nowMs - (ttl + 1) * 1000 - PRUNE_MARGIN_MS - 1000, refOf(idle));
    await redis.hset(dict.key, '7', JSON.stringify(['legacy', 1, 'x', 1, 'uniform', 'default', ['a'], []]));
    assert.equal(await dict.prune(ttl, true), 1);
    assert.deepEqual((await redis.hkeys(dict.key)).sort(), [refOf(busy), '7'].sort());
    assert.notEqual(await redis.zscore(dict.seenKey, '7'), null, 'the entry without a stamp is stamped, to be dropped one period later');
    assert.equal(await redis.zscore(dict.seenKey, refOf(idle)), null);
    assert.equal(JSON.stringify((await readDecisions(redis, own, [busy.id]))[0]), JSON.stringify(busy), 'a record whose entry is in use still reads');
    await redis.zadd(dict.seenKey, nowMs - (ttl + 1) * 1000 - PRUNE_MARGIN_MS - 1000, '7');
    assert.equal(await dict.prune(ttl, true), 1);
    assert.deepEqual(await redis.hkeys(dict.key), [refOf(busy)]);
    // Within its records' lifetime an entry stays, however often the prune runs.
    assert.equal(await dict.prune(ttl, true), 0);
    assert.deepEqual(await redis.hkeys(dict.key), [refOf(busy)]);
  });

  it('an unreadable value reads as gone, not as an error', async () => {
    const id = newDecisionId();
    const sec = Number.parseInt(id.slice(0, id.indexOf('-')), 36);
    await redis.hset(keys.decisionBucket(sec), bucketField(id), Buffer.from([0x92, 0x01]));
    assert.deepEqual(await readDecisions(redis, keys, [id]), [undefined]);
  });

  it('is several times smaller than the JSON it replaces', () => {
    let json = 0;
    let compact = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const r = generated(seed);
      json += Buffer.byteLength(JSON.stringify(r));
      compact += encodeInline(r).length;
    }
    assert.ok(compact < json * 0.75, `compact ${compact} vs JSON ${json}`);
  });
});
