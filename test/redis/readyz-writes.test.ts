/**
 * /readyz answers 503 while Redis refuses writes, though it answers PING: a replica (READONLY), a master short of
 * min-replicas-to-write (NOREPLICAS), one over maxmemory under noeviction (OOM). Readiness comes from a write each
 * process makes every few seconds (src/redis/write-probe.ts), never from the probe request itself; /healthz (liveness)
 * stays 200. On a Redis of its own (the shared one is never reconfigured).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Running } from '../../src/server.js';
import { eventually, startTest, testPrefix } from '../helpers/env.js';
import { PrivateRedis } from '../helpers/private-redis.js';

const prefix = testPrefix('readyz-writes');
let server: PrivateRedis;
let other: PrivateRedis;
let admin: Redis;
let rt: Running;

const get = async (url: string) => {
  const res = await rt.app!.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() as { status: string; redis?: boolean; writable?: boolean; reason?: string } };
};
const refusedCount = async () => {
  const text = (await rt.app!.inject({ method: 'GET', url: '/metrics' })).body;
  return Number(/^apportion_redis_writes_refused_total (\S+)$/m.exec(text)?.[1] ?? NaN);
};
/** Waits for /readyz to answer `status` with writes accepted (200) or refused (503); the probe runs every 2 s. */
const readyzBecomes = (status: 200 | 503) =>
  eventually(async () => {
    const r = await get('/readyz');
    return r.status === status && r.body.writable === (status === 200) ? r : undefined;
  }, 30_000);

before(async () => {
  server = await PrivateRedis.start({ aof: false });
  other = await PrivateRedis.start({ aof: false });
  admin = new Redis(server.url);
  rt = await startTest(prefix, {}, { REDIS_URL: server.url });
});
after(async () => {
  await rt?.close();
  admin?.disconnect();
  await server?.stop();
  await other?.stop();
});

describe('/readyz and writes Redis refuses', () => {
  it('is ready while writes are accepted', async () => {
    const r = await readyzBecomes(200);
    assert.equal(r.body.writable, true);
    assert.equal(r.body.redis, true);
  });

  it('min-replicas-to-write with no replica (NOREPLICAS): 503 naming the refusal, /healthz 200; ready again once writes pass', async () => {
    const before = await refusedCount();
    await admin.config('SET', 'min-replicas-to-write', '1');
    const r = await readyzBecomes(503);
    assert.equal(r.body.redis, true, 'PING still answers');
    assert.equal(r.body.writable, false);
    assert.match(r.body.reason ?? '', /Redis refuses writes \(NOREPLICAS/);
    assert.equal((await get('/healthz')).status, 200);
    assert.equal(await refusedCount(), before + 1);
    await admin.config('SET', 'min-replicas-to-write', '0');
    assert.equal((await readyzBecomes(200)).body.writable, true);
  });

  it('over maxmemory under noeviction (OOM): 503, then ready once there is room', async () => {
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', String(used + 64 * 1024));
    // Fill it until a write is refused (the probe's write is then refused too).
    const filler = `${prefix}:filler`;
    for (let i = 0; ; i++) {
      const ok = await admin.set(`${filler}:${i}`, 'x'.repeat(16 * 1024)).then(
        () => true,
        (e: Error) => (assert.match(e.message, /^OOM/), false),
      );
      if (!ok) break;
      assert.ok(i < 1000, 'maxmemory never reached');
    }
    const r = await readyzBecomes(503);
    assert.match(r.body.reason ?? '', /Redis refuses writes \(OOM/);
    await admin.config('SET', 'maxmemory', '0');
    await readyzBecomes(200);
  });

  it('a replica (READONLY): 503, then ready once it is a master again', async () => {
    // Last: a replica's first sync replaces its data with its master's (here: empty).
    await admin.replicaof('127.0.0.1', String(other.port));
    const r = await readyzBecomes(503);
    assert.match(r.body.reason ?? '', /READONLY/);
    await admin.replicaof('NO', 'ONE');
    await readyzBecomes(200);
  });
});
