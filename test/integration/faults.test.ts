/**
 * Redis faults against a private redis-server (its own port and data directory; the shared Redis is never
 * paused or killed): a stall (SIGSTOP), a restart with its data (AOF) and a restart without it. Bounds only:
 * each request that must not hang is raced against a generous timer, and no latency is asserted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { FastifyInstance } from 'fastify';
import { start, type Running } from '../../src/server.js';
import { eventually, silentLog, testConfig, testPrefix, within } from '../helpers/env.js';
import { PrivateRedis } from '../helpers/private-redis.js';

const PIPELINE = { defaultTotalTokens: 2000, agents: [{ name: 'a', minTokens: 100 }, { name: 'b', minTokens: 100 }] };
const BUDGET = { scope: 'tenant:t', unit: 'TOKENS', allocated: 1_000_000 };

async function boot(redis: PrivateRedis, prefix: string): Promise<{ rt: Running; app: FastifyInstance }> {
  const rt = await start(
    testConfig(prefix, { REDIS_URL: redis.url, APPORTION_RESERVATION_SWEEP_MS: '200', APPORTION_ROLLOUT_INTERVAL_MS: '500', APPORTION_CONFIG_POLL_MS: '200' }),
    silentLog,
    { api: true, workers: true, listen: false },
  );
  return { rt, app: rt.app! };
}

async function provision(app: FastifyInstance): Promise<void> {
  assert.equal((await app.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: PIPELINE })).statusCode < 300, true);
  assert.equal((await app.inject({ method: 'PUT', url: '/v1/budgets', payload: BUDGET })).statusCode < 300, true);
}

const allocate = (app: FastifyInstance) => app.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } });
const report = (app: FastifyInstance, decisionId: string) => app.inject({ method: 'POST', url: '/v1/outcomes', payload: { decisionId, quality: 0.5 } });
const counted = async (app: FastifyInstance) => (await app.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json<{ count: number }>().count;
const dataLoss = async (rt: Running) => (await rt.core.metrics.redisDataLoss.get()).values[0]?.value ?? 0;

describe('Redis stalled (SIGSTOP)', () => {
  let redis: PrivateRedis;
  let rt: Running;
  let app: FastifyInstance;
  before(async () => {
    redis = await PrivateRedis.start({ aof: false });
    ({ rt, app } = await boot(redis, testPrefix('stall')));
    await provision(app);
  });
  after(async () => {
    redis.resume();
    await rt.close();
    await redis.stop();
  });

  test('allocations answer from memory, outcomes, reservations, config writes and /readyz answer 503; afterwards an outcome retried is counted once', async () => {
    const recorded = (await allocate(app)).json<{ decisionId: string; recorded: boolean }>();
    assert.equal(recorded.recorded, true);
    assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    redis.pause();
    try {
      const [alloc, outcome, ready, reserve, pipelinePut, featuresPut] = await within(
        Promise.all([
          allocate(app),
          report(app, recorded.decisionId),
          app.inject({ method: 'GET', url: '/readyz' }),
          app.inject({ method: 'POST', url: '/v1/reservations', payload: { scope: 'tenant:t', unit: 'TOKENS', amount: 10, idempotencyKey: 'stalled-1' } }),
          app.inject({ method: 'PUT', url: '/v1/pipelines/p2', payload: PIPELINE }),
          app.inject({ method: 'PUT', url: '/v1/pipelines/p/features', payload: { features: [{ name: 'n', type: 'numeric' }] } }),
        ]),
      );
      assert.equal(alloc.statusCode, 200, alloc.body);
      const a = alloc.json<{ recorded: boolean; budgets: Record<string, { tokens: number }> }>();
      assert.equal(a.recorded, false, 'the decision record cannot be written while Redis is stalled');
      assert.deepEqual(Object.keys(a.budgets).sort(), ['a', 'b']);
      assert.equal(outcome.statusCode, 503, outcome.body);
      assert.equal(ready.statusCode, 503, ready.body);
      assert.equal(ready.json<{ redis: boolean }>().redis, false);
      assert.equal(reserve.statusCode, 503, reserve.body);
      // Control-plane writes too: a 503 to retry, not a 500 (their command timed out; the write may still land).
      for (const r of [pipelinePut, featuresPut]) {
        assert.equal(r.statusCode, 503, r.body);
        assert.equal(r.json<{ code: string }>().code, 'REDIS_UNAVAILABLE');
      }
    } finally {
      redis.resume();
    }
    await eventually(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200);
    // The careful client retries its 503'd outcome; whether the stalled add landed or not, it counts once.
    await eventually(async () => (await report(app, recorded.decisionId)).statusCode === 202);
    await eventually(async () => (await counted(app)) === 1);
    assert.equal((await report(app, recorded.decisionId)).statusCode, 202);
    await new Promise((r) => setTimeout(r, 500));
    await eventually(async () => (await rt.modules.flatMap((m) => m.queues ?? []).find((q) => q.name === 'outcomes')!.getJobCounts('waiting', 'active', 'delayed')).waiting === 0);
    assert.equal(await counted(app), 1);
    assert.equal(await dataLoss(rt), 0, 'a stall is not a data loss');
  });
});

describe('Redis restarted', () => {
  test('with its data (AOF): acknowledged outcomes counted exactly once, state kept, no data loss reported', async () => {
    const redis = await PrivateRedis.start({ aof: true });
    const { rt, app } = await boot(redis, testPrefix('aof'));
    try {
      await provision(app);
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await allocate(app)).json<{ decisionId: string }>().decisionId);
      for (const id of ids.slice(0, 10)) assert.equal((await report(app, id)).statusCode, 202);
      await redis.restart({ empty: false });
      // Acknowledged before the kill, or after the restart (retried until acknowledged): each counted once.
      for (const id of ids) await eventually(async () => (await report(app, id)).statusCode === 202);
      await eventually(async () => (await counted(app)) === ids.length);
      await eventually(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200);
      assert.equal(await counted(app), ids.length);
      assert.equal((await allocate(app)).statusCode, 200);
      assert.equal(await dataLoss(rt), 0);
    } finally {
      await rt.close();
      await redis.stop();
    }
  });

  test('empty: detected, the control plane reloaded, schedulers re-created, a 1 s reservation swept', async () => {
    const redis = await PrivateRedis.start({ aof: false });
    const prefix = testPrefix('empty');
    const { rt, app } = await boot(redis, prefix);
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    conn.on('error', () => undefined);
    const queues = ['budgets', 'rollout', 'learner-tick'].map((n) => {
      const q = new Queue(n, { connection: conn, prefix: `${prefix}:bull` });
      q.on('error', () => undefined);
      return q;
    });
    try {
      await provision(app);
      assert.equal((await allocate(app)).statusCode, 200);
      await redis.restart({ empty: true });
      await eventually(async () => (await dataLoss(rt)) === 1);
      // The pipeline existed only in this process's memory now: it is no longer served.
      await eventually(async () => (await allocate(app)).statusCode === 404);
      for (const q of queues) await eventually(async () => (await q.getJobSchedulers(0, -1)).length === 1, 30_000);
      await provision(app);
      assert.equal((await allocate(app)).statusCode, 200);
      const held = await app.inject({ method: 'POST', url: '/v1/reservations', payload: { scope: 'tenant:t', unit: 'TOKENS', amount: 500, ttlMs: 1000, idempotencyKey: 'after-loss' } });
      assert.equal(held.statusCode, 201, held.body);
      const reserved = async () => (await app.inject({ method: 'GET', url: '/v1/balances?scope=tenant:t&unit=TOKENS' })).json<{ balances: { reserved: number }[] }>().balances[0]?.reserved;
      assert.equal(await reserved(), 500);
      await eventually(async () => (await reserved()) === 0, 30_000);
      assert.equal(await dataLoss(rt), 1, 'reported once');
    } finally {
      await Promise.allSettled(queues.map((q) => q.close()));
      conn.disconnect();
      await rt.close();
      await redis.stop();
    }
  });
});

describe('start-up', () => {
  test('a start that fails after its workers started closes them and every connection', async () => {
    const redis = await PrivateRedis.start({ aof: false });
    const blocker = await import('node:net').then(
      (net) =>
        new Promise<import('node:net').Server>((resolve) => {
          const s = net.createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    );
    const port = (blocker.address() as { port: number }).port;
    const admin = new Redis(redis.url);
    try {
      const prefix = testPrefix('failstart');
      await assert.rejects(start(testConfig(prefix, { REDIS_URL: redis.url, PORT: String(port) }), silentLog, { api: true, workers: true, listen: true }), /EADDRINUSE/);
      // Only this client is left connected: the failed start's connections (workers, queues, core) are all closed.
      await eventually(async () => {
        const clients = (await admin.client('LIST')) as string;
        return clients.trim().split('\n').length === 1;
      }, 30_000);
    } finally {
      admin.disconnect();
      blocker.close();
      await redis.stop();
    }
  });
});
