/**
 * Apportion relies on Redis keeping every key it writes (budget ledgers, reservations, idempotency records,
 * applied-markers), so it needs `maxmemory-policy noeviction` (found by an external evaluation: under allkeys-lru a workspace's
 * ledger was evicted, its limit was skipped, a live reservation could not be committed, and nothing noticed).
 * At start-up an evicting policy refuses the start (ConfigError, exit code 2 from the CLI) unless
 * APPORTION_ALLOW_EVICTION is set; while running, a policy changed to an evicting one makes /readyz 503 with the
 * reason and is counted, and keys Redis evicts are counted. On a Redis of its own (the shared one is never reconfigured).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ConfigError } from '../../src/config/env.js';
import { infoField } from '../../src/redis/eviction.js';
import type { Running } from '../../src/server.js';
import { startTest, testPrefix } from '../helpers/env.js';
import { PrivateRedis } from '../helpers/private-redis.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('eviction');
let server: PrivateRedis;
let admin: Redis;
const running: Running[] = [];

const start = (env: Record<string, string> = {}) => startTest(prefix, {}, { REDIS_URL: server.url, ...env });
const readyz = async (rt: Running) => {
  const res = await rt.app!.inject({ method: 'GET', url: '/readyz' });
  return { status: res.statusCode, body: res.json() as { redis: boolean; reason?: string } };
};
const counter = async (rt: Running, name: string) => {
  const text = await (await rt.app!.inject({ method: 'GET', url: '/metrics' })).body;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

before(async () => {
  server = await PrivateRedis.start({ aof: false });
  admin = new Redis(server.url);
});
after(async () => {
  for (const rt of running) await rt.close();
  admin.disconnect();
  await server.stop();
});

describe('Redis maxmemory-policy', () => {
  it('an evicting policy refuses the start, naming maxmemory-policy and noeviction', async () => {
    for (const policy of ['allkeys-lru', 'volatile-lru']) {
      await admin.config('SET', 'maxmemory-policy', policy);
      // A start that succeeds (the bug) is closed again, so the file fails rather than hangs.
      const e = await start().then(
        async (rt) => {
          await rt.close();
          return undefined;
        },
        (err: unknown) => err,
      );
      {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, new RegExp(`maxmemory-policy is ${policy} on 127\\.0\\.0\\.1:${server.port}, but Apportion needs noeviction`));
        assert.match(e.message, /APPORTION_ALLOW_EVICTION=1/);
        assert.doesNotMatch(e.message, /\n/);
      }
    }
    // Refused before anything was written.
    assert.deepEqual(await admin.keys(`${prefix}:*`), []);
  });

  it('the CLI exits with code 2, as for other configuration errors', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const env = { ...process.env, REDIS_URL: server.url, APPORTION_KEY_PREFIX: prefix, PORT: '0', LOG_LEVEL: 'silent', APPORTION_SEED_EXAMPLES: 'false' };
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, ['bin/apportion.mjs', 'api'], { cwd: ROOT, env, timeout: 120_000 }, (err, _out, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      ),
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /maxmemory-policy is allkeys-lru .*needs noeviction/);
  });

  it('APPORTION_ALLOW_EVICTION=1 starts anyway and stays ready', async () => {
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const rt = await start({ APPORTION_ALLOW_EVICTION: '1' });
    running.push(rt);
    await rt.core.eviction.check();
    assert.equal((await readyz(rt)).status, 200);
    await rt.close();
    running.pop();
  });

  it('a policy changed at run time makes /readyz 503 with the reason, counted; noeviction again makes it ready', async () => {
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    const rt = await start();
    running.push(rt);
    assert.equal((await readyz(rt)).status, 200);
    await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
    await rt.core.eviction.check();
    const not = await readyz(rt);
    assert.equal(not.status, 503);
    assert.equal(not.body.redis, true);
    assert.match(not.body.reason ?? '', /maxmemory-policy is not noeviction \(127\.0\.0\.1:\d+: volatile-lru\)/);
    assert.equal(await counter(rt, 'apportion_redis_eviction_policy_errors_total'), 1);
    // Checked again: still one change.
    await rt.core.eviction.check();
    assert.equal(await counter(rt, 'apportion_redis_eviction_policy_errors_total'), 1);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await rt.core.eviction.check();
    assert.equal((await readyz(rt)).status, 200);
  });

  it('keys Redis evicts are counted', async () => {
    const rt = running[0]!;
    assert.equal(await counter(rt, 'apportion_redis_evicted_keys_total'), 0);
    const used = Number(infoField(await admin.info('memory'), 'used_memory'));
    await admin.config('SET', 'maxmemory', String(used + 1_000_000));
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const junk = 'x'.repeat(1024);
    for (let i = 0; i < 4000; i += 200) {
      const p = admin.pipeline();
      for (let k = i; k < i + 200; k++) p.set(`junk:${k}`, junk);
      await p.exec();
    }
    // No limit any more: nothing is evicted after the count is read (the server's own writes, at the limit, would
    // each evict another key between this read and the check). The policy stays an evicting one.
    await admin.config('SET', 'maxmemory', '0');
    const evicted = Number(infoField(await admin.info('stats'), 'evicted_keys'));
    assert.ok(evicted > 0, `evicted_keys ${evicted}`);
    await rt.core.eviction.check();
    assert.equal(await counter(rt, 'apportion_redis_evicted_keys_total'), evicted);
    assert.equal((await readyz(rt)).status, 503);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
  });
});
