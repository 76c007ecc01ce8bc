import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/env.js';
import { costKeys } from '../../src/costs/keys.js';
import { newDecisionId } from '../../src/allocation/decisions.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';

/** CRC16/XMODEM of a key's hash tag mod 16384: the slot Redis Cluster stores it in. */
function slotOf(key: string): number {
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  const tag = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const b of Buffer.from(tag)) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** The master of a slot in a 3-master cluster as `redis-cli --cluster create` splits it. */
const masterOf = (slot: number) => (slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2);

describe('key layout on one Redis and on a cluster', () => {
  it('one Redis keeps the unsharded names', () => {
    const k = createKeys('p');
    assert.equal(k.decisionBucket(1_800_000_000, k.shardOf('x')), 'p:{decisions:1800000000}');
    assert.equal(k.bullPrefix(), 'p:bull');
    const ck = costKeys(k);
    assert.equal(ck.rollup('day:2026-01-01', ck.shardOf('t')), 'p:{costs}:rollup:day:2026-01-01');
    assert.equal(ck.applied('t'), 'p:{costs}:applied:t');
  });

  it("a cluster's layout hash-tags BullMQ and spreads one second's decisions and the span rollups over every master", () => {
    const k = createKeys('p', { cluster: true, shards: 16 });
    assert.equal(k.bullPrefix(), 'p:{bull}');
    const rand = mulberry32(42);
    const sec = 1_800_000_123;
    const perShard = new Array<number>(16).fill(0);
    const perMaster = [0, 0, 0];
    for (let i = 0; i < 16_000; i++) {
      const id = newDecisionId(sec * 1000 + Math.floor(rand() * 1000));
      const bucket = k.decisionBucket(sec, k.shardOf(id));
      assert.equal(bucket, `p:{decisions:${sec}:${k.shardOf(id)}}`);
      perShard[k.shardOf(id)]!++;
      perMaster[masterOf(slotOf(bucket))]!++;
    }
    for (const n of perShard) assert.ok(n > 700 && n < 1300, `shards are used evenly: ${perShard.join(' ')}`);
    for (const n of perMaster) assert.ok(n > 2000, `every master takes a share of one second's decisions: ${perMaster.join(' ')}`);
    const ck = costKeys(k);
    const masters = new Set<number>();
    for (let t = 0; t < 200; t++) {
      const trace = `trace-${t}`;
      const s = ck.shardOf(trace);
      // A trace's applied string and its rollups share a slot (one script call), and the shards reach every master.
      assert.equal(slotOf(ck.applied(trace)), slotOf(ck.rollup('customer:2026-01-01', s)));
      masters.add(masterOf(slotOf(ck.applied(trace))));
    }
    assert.equal(masters.size, 3);
  });

  it('REDIS_CLUSTER_NODES: host:port seeds, 16 shards by default; a bad node names the variable', () => {
    const c = loadConfig({ REDIS_CLUSTER_NODES: '127.0.0.1:7000, redis-a:7001,[::1]:7002' });
    assert.deepEqual(c.redisClusterNodes, ['127.0.0.1:7000', 'redis-a:7001', '[::1]:7002']);
    assert.equal(c.redisShards, 16);
    assert.equal(loadConfig({}).redisClusterNodes, undefined);
    assert.equal(loadConfig({}).redisShards, 1);
    assert.equal(loadConfig({ REDIS_CLUSTER_NODES: 'a:1', APPORTION_REDIS_SHARDS: '4' }).redisShards, 4);
    for (const bad of ['localhost', 'a:0', 'a:70000', 'a:1,b', ',']) {
      assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: bad }), (e: unknown) => e instanceof ConfigError && /REDIS_CLUSTER_NODES/.test(e.message), bad);
    }
  });
});
