import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { ReservationService } from '../../src/budgets/reservations.js';
import { AppError } from '../../src/errors/app-error.js';
import { connectRedis } from '../../src/redis/connection.js';
import { ApportionClient } from '@apportion/sdk';
import { ReservationsClient } from '@apportion/sdk';
import { dropPrefix, eventually, REDIS_URL, testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';
import { harness, readLedger, type Harness } from './harness.js';

/**
 * A stalled store, for real and for this connection only: a BLPOP on an empty key blocks the connection, and
 * Redis runs the commands queued behind it when it returns, after their callers were answered 503. (Pausing the
 * shared Redis itself would stall every other test running against it.)
 */
function stall(redis: Redis, seconds: number): Promise<unknown> {
  // The request-path connection bounds each command (APPORTION_REDIS_COMMAND_TIMEOUT_MS): the client stops
  // waiting for the BLPOP itself after the bound, while Redis keeps the connection blocked for `seconds`.
  return redis.blpop(`stall-${randomUUID()}`, seconds).catch(() => undefined);
}

describe('a reserve or draw that reaches a stalled store after its deadline is never granted', () => {
  const prefix = testPrefix('budget-deadline');
  let h: Harness;
  let conn: Redis;
  let svc: ReservationService;
  before(async () => {
    h = await harness(prefix);
    conn = await connectRedis(REDIS_URL, { name: 'budgets-deadline' });
    // The harness's ledger clock is fake; deadlines use the wall clock, compared with Redis's own.
    svc = new ReservationService({ redis: conn, keys: h.keys, retentionMs: 3_600_000, now: () => h.clock.now, timeoutMs: 200 });
  });
  after(async () => {
    await conn.quit();
    await h.close();
    await dropPrefix(prefix);
  });

  it('answers 503 while stalled, does nothing when the script runs late, and a retry with the same key is granted once', async () => {
    await h.ledger.put({ scope: 'tenant:st', unit: 'TOKENS', allocated: 1000 });
    const key = h.keys.budget('st', 'TOKENS', 'tenant:st');
    const body = { scope: 'tenant:st', unit: 'TOKENS' as const, amount: 300, idempotencyKey: 'stalled-1' };
    const blocked = stall(conn, 1);
    await assert.rejects(svc.reserve(body), (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE');
    await blocked;
    // The script has run by now (it was queued behind the BLPOP on the same connection): it held nothing.
    await conn.ping();
    let l = await readLedger(h.redis, key);
    assert.deepEqual([l.r, l.v], [1000, 0], 'nothing held by the late script');
    assert.equal(await h.redis.exists(h.keys.idempotency('st', 'stalled-1')), 0, 'and nothing stored under the key');
    const g = await svc.reserve(body);
    assert.ok('id' in g && g.replayed === undefined);
    const replay = await svc.reserve(body);
    assert.ok('id' in replay && replay.id === g.id && replay.replayed === true);
    l = await readLedger(h.redis, key);
    assert.deepEqual([l.r, l.v], [700, 300], 'held once');

    // A draw behaves the same.
    const blocked2 = stall(conn, 1);
    await assert.rejects(svc.draw(g.id, { amount: 100, idempotencyKey: 'draw-1' }), (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE');
    await blocked2;
    await conn.ping();
    assert.equal((await svc.get(g.id)).drawn, undefined, 'the late draw took nothing from the parent');
    const d = await svc.draw(g.id, { amount: 100, idempotencyKey: 'draw-1' });
    assert.equal((await svc.get(g.id)).drawn, 100);
    assert.ok('id' in d);
  });

  it('a script that runs in time is unaffected by the deadline', async () => {
    await h.ledger.put({ scope: 'tenant:ok', unit: 'TOKENS', allocated: 10 });
    const g = await svc.reserve({ scope: 'tenant:ok', unit: 'TOKENS', amount: 10, idempotencyKey: 'in-time' });
    assert.ok('id' in g);
  });
});

describe('an API host whose clock differs from Redis’s', () => {
  const prefix = testPrefix('budget-deadline-skew');
  let h: Harness;
  let conn: Redis;
  before(async () => {
    h = await harness(prefix);
    conn = await connectRedis(REDIS_URL, { name: 'budgets-deadline-skew' });
  });
  after(async () => {
    await conn.quit();
    await h.close();
    await dropPrefix(prefix);
  });

  it('5 s behind Redis: reserves and draws are granted once the offset is estimated', async () => {
    const offsets: number[] = [];
    const svc = new ReservationService({
      redis: conn,
      keys: h.keys,
      retentionMs: 3_600_000,
      now: () => h.clock.now,
      wallClock: () => Date.now() - 5000,
      onClockOffset: (ms) => offsets.push(ms),
    });
    await h.ledger.put({ scope: 'tenant:behind', unit: 'TOKENS', allocated: 1000 });
    let n = 0;
    // The first call may still be refused (its deadline is sent before the first estimate lands); later ones not.
    const g = await eventually(async () => {
      try {
        return await svc.reserve({ scope: 'tenant:behind', unit: 'TOKENS', amount: 100, idempotencyKey: `behind-${n++}` });
      } catch (e) {
        if (e instanceof AppError && e.code === 'REDIS_UNAVAILABLE') return undefined;
        throw e;
      }
    }, 30_000);
    assert.ok('id' in g);
    assert.ok(Math.abs(svc.clockOffsetMs - 5000) < 1000, `offset estimated near 5000 ms: ${svc.clockOffsetMs}`);
    assert.ok(offsets.length > 0, 'the estimate was reported');
    const d = await svc.draw(g.id, { amount: 10, idempotencyKey: 'behind-draw' });
    assert.ok('id' in d);
  });

  it('5 s ahead of Redis: a script that runs after the caller’s 503 still does nothing', async () => {
    const offsets: number[] = [];
    const svc = new ReservationService({
      redis: conn,
      keys: h.keys,
      retentionMs: 3_600_000,
      now: () => h.clock.now,
      timeoutMs: 200,
      wallClock: () => Date.now() + 5000,
      onClockOffset: (ms) => offsets.push(ms),
    });
    await h.ledger.put({ scope: 'tenant:ahead', unit: 'TOKENS', allocated: 1000 });
    // A first reserve starts the estimate (a host ahead of Redis is granted either way).
    assert.ok('id' in (await svc.reserve({ scope: 'tenant:ahead', unit: 'TOKENS', amount: 1, idempotencyKey: 'ahead-0' })));
    await eventually(() => offsets.length > 0, 10_000).catch(() => undefined);
    const key = h.keys.budget('ahead', 'TOKENS', 'tenant:ahead');
    const blocked = stall(conn, 1);
    await assert.rejects(svc.reserve({ scope: 'tenant:ahead', unit: 'TOKENS', amount: 300, idempotencyKey: 'ahead-1' }), (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE');
    await blocked;
    await eventually(() => conn.ping(), 30_000);
    const l = await readLedger(h.redis, key);
    assert.deepEqual([l.r, l.v], [999, 1], 'nothing held by the late script');
    assert.equal(await h.redis.exists(h.keys.idempotency('ahead', 'ahead-1')), 0);
    assert.ok(Math.abs(svc.clockOffsetMs + 5000) < 1000, `offset estimated near -5000 ms: ${svc.clockOffsetMs}`);
  });
});

describe('the SDK retries a 503 with the same idempotency key (over a real socket)', () => {
  const prefix = testPrefix('budget-deadline-http');
  const server = serveDuring(prefix, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });

  it('a reserve sent while the store stalls past the route timeout is granted exactly once', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/budgets', { scope: 'tenant:sdk', unit: 'TOKENS', allocated: 1000 });
    const res = new ReservationsClient(client, { attempts: 6, baseDelayMs: 200 });
    let answers503 = 0;
    const counting = new ReservationsClient(new ApportionClient({ url: server.rt.url! }), { attempts: 1 });
    // The server answers 503 after its 2 s store timeout; the stall lasts 3 s.
    const blocked = stall(server.rt.core.redis, 3);
    const [granted, probe] = await Promise.allSettled([
      res.reserve({ scope: 'tenant:sdk', amount: 400, idempotencyKey: 'sdk-1' }),
      counting.reserve({ scope: 'tenant:sdk', amount: 1, idempotencyKey: 'probe-1' }).catch((e: { statusCode?: number }) => {
        if (e.statusCode === 503) answers503++;
        throw e;
      }),
    ]);
    await blocked;
    assert.equal(probe.status, 'rejected');
    assert.equal(answers503, 1, 'the store really stalled past the route timeout: a call without retries got 503');
    assert.equal(granted.status, 'fulfilled', String((granted as PromiseRejectedResult).reason));
    const b = (await res.balances('tenant:sdk'))[0]!;
    assert.deepEqual([b.reserved, b.remaining], [400, 600], 'the 400 is held once; the probe that was answered 503 holds nothing');
    const again = await res.reserve({ scope: 'tenant:sdk', amount: 400, idempotencyKey: 'sdk-1' });
    assert.equal(again.id, (granted as PromiseFulfilledResult<{ id: string }>).value.id);
    assert.equal(again.replayed, true);
  });
});
