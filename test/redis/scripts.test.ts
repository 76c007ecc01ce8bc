import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packBatch } from '../../src/allocation/record-codec.js';
import { runScript } from '../../src/redis/scripts.js';
import { testPrefix, testRedis } from '../helpers/env.js';

const prefix = testPrefix('scripts');
const redis = testRedis(prefix, { enableAutoPipelining: true });

describe('runScript', () => {
  it('runs a script after Redis lost its script cache (NOSCRIPT → EVAL), and by EVALSHA once it is cached again', async () => {
    const bucket = `${prefix}:{decisions:1}`;
    // What a Redis restart or failover does to every cached script (other test files then fall back the same way).
    await redis.script('FLUSH');
    assert.equal(await runScript<number>(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch(['a', '{"n":1}', 'b', '{"n":2}'])]), 2);
    assert.deepEqual(await redis.hgetall(bucket), { a: '{"n":1}', b: '{"n":2}' });
    // EVAL cached it: concurrent auto-pipelined calls now go through EVALSHA, each answered on its own.
    const n = await Promise.all(Array.from({ length: 20 }, (_, i) => runScript<number>(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch([`c${i}`, '{}'])])));
    assert.deepEqual(n, Array.from({ length: 20 }, () => 1));
    assert.equal(await redis.hlen(bucket), 22);
  });

  it('refuses an unknown script and a key count other than the header declares', async () => {
    await assert.rejects(runScript(redis, 'noSuchScript', [], []), /noSuchScript is not defined/);
    await assert.rejects(runScript(redis, 'decisionsPut', [`${prefix}:a`, `${prefix}:b`], [1, 'x\x1f{}']), /takes 1 keys, called with 2/);
    await assert.rejects(runScript(redis, 'decisionsPut', [`${prefix}:a`], [1, 'x\x1f{}'], true), /takes 1 keys/);
  });
});
