/**
 * Found by an external evaluation: a span batch whose rollup script hit Redis's OOM refusal (maxmemory reached, noeviction) was
 * answered 200 with its spans taken back and rejected as "out of range": the script took any error of HINCRBY for
 * an overflow. Now only an overflow is refused per trace; OOM fails the request with a 503 (retryable), nothing
 * half-applied, and the retry (or the repair) stores and counts the span exactly once. On a Redis of its own: the
 * OOM is made by setting maxmemory below what it uses, just before the rollup call, so the writes before it succeed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { LightMyRequestResponse } from 'fastify';
import { luaScripts } from '../../src/redis/scripts.js';
import type { Running } from '../../src/server.js';
import { startTest, testPrefix } from '../helpers/env.js';
import { PrivateRedis } from '../helpers/private-redis.js';

const prefix = testPrefix('costs-ingest-oom');
const DAY = '2025-07-03';
let server: PrivateRedis;
let admin: Redis;
let rt: Running;

const call = (method: 'GET' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

before(async () => {
  server = await PrivateRedis.start({ aof: false });
  admin = new Redis(server.url);
  rt = await startTest(prefix, { workers: false }, { REDIS_URL: server.url });
});
after(async () => {
  await rt.close();
  admin.disconnect();
  await server.stop();
});

describe('span ingest when Redis is out of memory', () => {
  it('OOM at the rollup: 503, nothing rejected; after memory is raised the retry stores and counts the span once', async () => {
    const redis = rt.core.redis as unknown as { evalsha: (...a: unknown[]) => Promise<unknown> };
    const rollupSha = luaScripts().get('costRollup')!.sha;
    const evalsha = redis.evalsha;
    let injected = 0;
    // Redis refuses the rollup script's first write (OOM) while everything before it was stored.
    redis.evalsha = async function (this: unknown, ...a: unknown[]) {
      if (a[0] === rollupSha && injected++ === 0) await admin.config('SET', 'maxmemory', '1');
      return evalsha.apply(this, a);
    };
    const span = {
      traceId: 'oom-trace',
      spanId: 's1',
      sessionId: 'oom-session',
      customer: 'oom-customer',
      agent: 'a',
      model: 'gpt-4o',
      provider: 'openai',
      usage: { input: 11, output: 0 },
      start: `${DAY}T11:00:00Z`,
      end: `${DAY}T11:00:01Z`,
    };
    try {
      const res = await call('POST', '/v1/spans', { spans: [span] });
      assert.equal(injected, 1);
      assert.equal(res.statusCode, 503, res.body);
      assert.equal((res.json() as { code: string }).code, 'REDIS_UNAVAILABLE');
    } finally {
      redis.evalsha = evalsha;
      await admin.config('SET', 'maxmemory', '0');
    }
    // Nothing of the trace reached the rollups.
    const before = await call('GET', `/v1/reports/costs?groupBy=customer&from=${DAY}&to=${DAY}`);
    assert.equal((before.json() as { rows: { key: string }[] }).rows.find((r) => r.key === 'oom-customer'), undefined);

    const retry = await call('POST', '/v1/spans', { spans: [span] });
    assert.equal(retry.statusCode, 200, retry.body);
    const r = retry.json() as { accepted: number; duplicates: number; rejected: unknown[] };
    // The failed request stored the span; the retry finds it and finishes the rollup.
    assert.deepEqual([r.accepted, r.duplicates, r.rejected.length], [0, 1, 0], retry.body);
    const tree = await call('GET', '/v1/sessions/oom-session/cost-tree');
    assert.equal(tree.statusCode, 200, tree.body);
    const total = (tree.json() as { total: { calls: number; tokens: { input: number } } }).total;
    assert.deepEqual([total.calls, total.tokens.input], [1, 11]);
    const report = await call('GET', `/v1/reports/costs?groupBy=customer&from=${DAY}&to=${DAY}`);
    const row = (report.json() as { rows: { key: string; calls: number; tokens: { input: number } }[] }).rows.find((x) => x.key === 'oom-customer');
    assert.deepEqual([row?.calls, row?.tokens.input], [1, 11]);
    // And a third send changes nothing.
    const again = (await call('POST', '/v1/spans', { spans: [span] })).json() as { accepted: number; duplicates: number };
    assert.deepEqual([again.accepted, again.duplicates], [0, 1]);
    const after2 = await call('GET', `/v1/reports/costs?groupBy=customer&from=${DAY}&to=${DAY}`);
    const row2 = (after2.json() as { rows: { key: string; calls: number; tokens: { input: number } }[] }).rows.find((x) => x.key === 'oom-customer');
    assert.deepEqual([row2?.calls, row2?.tokens.input], [1, 11]);
  });
});
