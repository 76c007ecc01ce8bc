import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packBatch } from '../../src/allocation/record-codec.js';
import { callScript, runScript, SCRIPT_REPLIES } from '../../src/redis/scripts.js';
import { testPrefix, testRedis } from '../helpers/env.js';

const prefix = testPrefix('scripts');
const redis = testRedis(prefix, { enableAutoPipelining: true });
/** A decision-record deadline (ARGV[3], epoch ms on Redis's clock) far ahead: the writes below are never late. */
const FAR = 4_000_000_000_000;

describe('runScript', () => {
  it('runs a script after Redis lost its script cache (NOSCRIPT → EVAL), and by EVALSHA once it is cached again', async () => {
    const bucket = `${prefix}:{decisions:1}`;
    // What a Redis restart or failover does to every cached script (other test files then fall back the same way).
    await redis.script('FLUSH');
    assert.equal(await runScript(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch(['a', '{"n":1}', 'b', '{"n":2}']), FAR]), 2);
    assert.deepEqual(await redis.hgetall(bucket), { a: '{"n":1}', b: '{"n":2}' });
    // EVAL cached it: concurrent auto-pipelined calls now go through EVALSHA, each answered on its own.
    const n = await Promise.all(Array.from({ length: 20 }, (_, i) => runScript(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch([`c${i}`, '{}']), FAR])));
    assert.deepEqual(n, Array.from({ length: 20 }, () => 1));
    assert.equal(await redis.hlen(bucket), 22);
  });

  it('refuses an unknown script and a key count other than the header declares', async () => {
    await assert.rejects(runScript(redis, 'noSuchScript', [], []), /noSuchScript is not defined/);
    await assert.rejects(runScript(redis, 'decisionsPut', [`${prefix}:a`, `${prefix}:b`], [1, 'x\x1f{}', FAR]), /takes 1 keys, called with 2/);
    await assert.rejects(runScript(redis, 'decisionsPut', [`${prefix}:a`], [1, 'x\x1f{}', FAR], true), /takes 1 keys/);
  });
});

describe('callScript', () => {
  it('answers a reply decoded by the script\'s entry in SCRIPT_REPLIES, typed by it', async () => {
    const bucket = `${prefix}:{decisions:2}`;
    const n: number = await callScript(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch(['a', '{}']), FAR]);
    assert.equal(n, 1);
    // The reply's type is the decoder's: using it as another type does not compile (tsc checks this file).
    // @ts-expect-error decisionsPut answers a number
    const s: string = await callScript(redis, 'decisionsPut', [bucket], [2_000_000_000, packBatch(['b', '{}']), FAR]);
    assert.equal(typeof s, 'number');
    // @ts-expect-error a script not in SCRIPT_REPLIES cannot be called
    await assert.rejects(callScript(redis, 'noSuchScript', [], []), /noSuchScript is not defined/);
  });

  it('refuses a reply of another shape than the decoder declares', () => {
    assert.equal(SCRIPT_REPLIES.applyOutcome(2, 'applyOutcome'), 'expired');
    assert.equal(SCRIPT_REPLIES.applyOutcome(3, 'applyOutcome'), 'deleted');
    assert.throws(() => SCRIPT_REPLIES.applyOutcome(4, 'applyOutcome'), /applyOutcome answered 4, not 0, 1, 2 or 3/);
    assert.deepEqual(SCRIPT_REPLIES.spanIngest([4, '10', 'x'], 'spanIngest'), { version: 4, statuses: '10', lines: ['x'] });
    assert.throws(() => SCRIPT_REPLIES.spanIngest(['4', '10'], 'spanIngest'), /not \{ version, statuses, line… \}/);
  });
});

describe('apply-outcome.lua', () => {
  // What the script writes: the marker, the arm's summary and per-agent hashes, the list.
  const keys = (tag: string) => [`${prefix}:{o-${tag}}:marker`, `${prefix}:{o-${tag}}:sum`, `${prefix}:{o-${tag}}:agents`, `${prefix}:{o-${tag}}:buffer`];
  const tombstone = (tag: string) => `${prefix}:{o-${tag}}:deleted`;
  const apply = (tag: string, observations: string, quality = '0.5', cost = '', pipelineVersion = 1) => {
    const [marker, sum, agents, buffer] = keys(tag);
    return callScript(redis, 'applyOutcome', [marker!, tombstone(tag), sum!, agents!, sum!, sum!, sum!, buffer!], [Math.floor(Date.now() / 1000) + 600, 'd1', quality, cost, observations, 1, 10, pipelineVersion, '', '', '', 'entry']);
  };
  const written = async (tag: string) => (await Promise.all(keys(tag).map((k) => redis.exists(k)))).reduce((a, b) => a + b, 0);

  it('applies a complete outcome once: the marker, the arm summary, the per-agent sums and the list entry', async () => {
    const obs = JSON.stringify([{ a: 'x', u: 0.5, h: 0, t: 0, c: 50, b: 100 }]);
    assert.equal(await apply('ok', obs), 'applied');
    assert.equal(await written('ok'), 4);
    assert.equal(await apply('ok', obs), 'duplicate');
    assert.equal(await redis.hget(keys('ok')[1]!, 'n'), '1');
  });

  it('writes nothing, not even the marker, when an observation or the quality is unreadable; a corrected retry then applies', async () => {
    // An observation without its numbers (what a usage entry named `constructor` once produced: `b` dropped by JSON).
    await assert.rejects(apply('bad', JSON.stringify([{ a: 'x', u: 0.5, h: 0, t: 0, c: 50, b: 100 }, { a: 'constructor', u: 0.1, h: 0, t: 0, c: 7 }])), /BAD_OUTCOME observation of agent constructor/);
    await assert.rejects(apply('bad', 'not json'), /BAD_OUTCOME/);
    await assert.rejects(apply('bad', '[]', 'x'), /BAD_OUTCOME/);
    await assert.rejects(apply('bad', '[]', '0.5', 'NaNx'), /BAD_OUTCOME/);
    assert.equal(await written('bad'), 0);
    assert.equal(await apply('bad', JSON.stringify([{ a: 'x', u: 0.5, h: 0, t: 0, c: 50, b: 100 }])), 'applied');
  });

  it('refuses an unreadable unit argument before writing anything', async () => {
    const [marker, sum, agents, buffer] = keys('unit');
    const call = (unit: string) =>
      callScript(redis, 'applyOutcome', [marker!, tombstone('unit'), sum!, agents!, sum!, `${sum}:units`, `${sum}:buckets`, buffer!], [Math.floor(Date.now() / 1000) + 600, 'd1', '0.5', '', '[]', 1, 10, 1, '', '1', unit, 'entry']);
    for (const bad of ['x 1 2', '3', '3 -1', '3 1.5']) await assert.rejects(call(bad), /BAD_OUTCOME unit/, bad);
    assert.equal(await written('unit'), 0);
    assert.equal(await call('3 1 2 3 4'), 'applied');
    assert.equal(await redis.hget(sum!, 'units'), '1');
  });

  it('writes nothing for a decision of a pipeline deleted since (its tombstone holds that version or a newer one)', async () => {
    const obs = JSON.stringify([{ a: 'x', u: 0.5, h: 0, t: 0, c: 50, b: 100 }]);
    await redis.set(tombstone('gone'), '3', 'PX', 60_000);
    assert.equal(await apply('gone', obs, '0.5', '', 3), 'deleted');
    assert.equal(await apply('gone', obs, '0.5', '', 2), 'deleted');
    assert.equal(await written('gone'), 0);
    assert.equal(await apply('gone', obs, '0.5', '', 4), 'applied', 'a pipeline re-created under the id');
  });
});
