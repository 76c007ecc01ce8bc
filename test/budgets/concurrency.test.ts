import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { budgetKeys } from '../../src/budgets/keys.js';
import { ReservationService } from '../../src/budgets/reservations.js';
import { AppError } from '../../src/errors/app-error.js';
import { connectRedis } from '../../src/redis/connection.js';
import type { Running } from '../../src/server.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { dropPrefix, REDIS_TARGET, startTest, testPrefix } from '../helpers/env.js';
import { harness, ledgerViolation, readLedger, type Harness } from './harness.js';

/** Seeded PRNG: the run is reproducible. */
const rng = mulberry32;

const CLIENTS = 200;
const OPERATIONS = 100_000;
const CONNECTIONS = 8;

describe('200 concurrent clients, 100k operations, one budget', () => {
  const prefix = testPrefix('budget-load');
  let h: Harness;
  const extra: Redis[] = [];
  before(async () => {
    h = await harness(prefix, Date.now());
  });
  after(async () => {
    for (const r of extra) r.disconnect();
    await h.close();
    await dropPrefix(prefix);
  });

  it('never overspends and keeps the ledger identity while it runs', async () => {
    const ALLOCATED = 30_000_000; // runs out about half-way through the operations
    const scope = 'tenant:load/workspace:w/agent:a';
    await h.ledger.put({ scope: 'tenant:load', unit: 'TOKENS', allocated: ALLOCATED, overagePolicy: 'ALLOW_IF_AVAILABLE' });
    // Several connections, so operations really interleave across clients, not only within one pipeline.
    const services: ReservationService[] = [h.reservations];
    for (let i = 1; i < CONNECTIONS; i++) {
      const r = await connectRedis(REDIS_TARGET, { name: 'budgets-load' });
      extra.push(r);
      services.push(new ReservationService({ redis: r, keys: budgetKeys(prefix), retentionMs: 600_000 }));
    }
    const key = h.keys.budget('load', 'TOKENS', 'tenant:load');
    let ops = 0;
    let charged = 0;
    let overage = 0;
    let denied = 0;
    let running = true;
    const samples: string[] = [];
    // A sampler reads the ledger concurrently with the load: the identity must hold at every instant.
    const sampler = (async () => {
      while (running) {
        const v = ledgerViolation(await readLedger(h.redis, key));
        if (v) samples.push(v);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const client = async (c: number) => {
      const rand = rng(1000 + c);
      const svc = services[c % CONNECTIONS]!;
      let n = 0;
      while (ops < OPERATIONS) {
        const amount = 1 + Math.floor(rand() * 5000);
        ops++;
        let id: string;
        try {
          const g = await svc.reserve({ scope, unit: 'TOKENS', amount, ttlMs: 60_000, idempotencyKey: `c${c}-${n++}` });
          if (!('id' in g)) throw new Error('not a reservation');
          id = g.id;
        } catch (e) {
          if (!(e instanceof AppError) || e.code !== 'BUDGET_EXCEEDED') throw e;
          denied++;
          continue;
        }
        ops++;
        const x = rand();
        if (x < 0.2) {
          await svc.release(id);
        } else {
          // Up to 30 % over the reservation: the overage is charged from remaining while there is some; beyond
          // that it is recorded as debt and marked as an overrun (the use happened), never refused.
          const actual = Math.floor(amount * (x * 1.3));
          const c = await svc.commit(id, actual);
          assert.equal(c.charged, actual);
          charged += c.charged;
          overage += Math.max(0, actual - amount);
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    running = false;
    await sampler;
    assert.deepEqual(samples, [], 'the identity held at every sampled instant');
    const l = await readLedger(h.redis, key);
    assert.equal(ledgerViolation(l), undefined);
    assert.equal(l.v, 0, 'nothing is left reserved');
    assert.equal(l.s + l.d, charged, 'spent + debt is exactly what the commits charged');
    assert.ok(l.s <= ALLOCATED, `spent ${l.s} ≤ allocated ${ALLOCATED}: zero overspend`);
    const overrun = Number((await h.redis.hget(key, 'ov')) ?? 0);
    assert.ok(l.d <= overrun && overrun <= overage, `debt ${l.d} ≤ overrun ${overrun} ≤ overage committed ${overage}: beyond the allocation only uses that exceeded their reservations`);
    assert.ok(denied > 0, 'the budget ran out, so the cap was really exercised');
    assert.ok(ops >= OPERATIONS);
  });
});

describe('fail closed', () => {
  const prefix = testPrefix('budget-closed');
  let rt: Running;
  before(async () => {
    rt = await startTest(prefix, {}, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
  });

  it('refuses reservations with 503 when Redis cannot be reached, never grants them', async () => {
    const put = await rt.app!.inject({ method: 'PUT', url: '/v1/budgets', payload: { scope: 'tenant:x', unit: 'TOKENS', allocated: 100 } });
    assert.equal(put.statusCode, 201, put.body);
    const ok = await rt.app!.inject({ method: 'POST', url: '/v1/reservations', payload: { scope: 'tenant:x', unit: 'TOKENS', amount: 1, idempotencyKey: 'a' } });
    assert.equal(ok.statusCode, 201);
    rt.core.redis.disconnect(); // the request-path connection is gone (no offline queue)
    const r = await rt.app!.inject({ method: 'POST', url: '/v1/reservations', payload: { scope: 'tenant:x', unit: 'TOKENS', amount: 1, idempotencyKey: 'b' } });
    assert.equal(r.statusCode, 503, r.body);
    assert.equal(r.json().code, 'REDIS_UNAVAILABLE');
    const c = await rt.app!.inject({ method: 'POST', url: `/v1/reservations/${ok.json().id}/commit`, payload: { amount: 1 } });
    assert.equal(c.statusCode, 503);
    const b = await rt.app!.inject({ method: 'GET', url: '/v1/balances?scope=tenant:x' });
    assert.equal(b.statusCode, 503);
  });

  it('maps a store that was never reachable to 503 as well', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    dead.on('error', () => undefined);
    const svc = new ReservationService({ redis: dead, keys: budgetKeys(prefix), retentionMs: 1000 });
    await assert.rejects(svc.reserve({ scope: 'tenant:x', unit: 'TOKENS', amount: 1, idempotencyKey: 'z' }), (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE' && e.statusCode === 503);
    dead.disconnect();
  });
});

describe('fail closed when the store stops answering', () => {
  it('answers 503 after the timeout instead of hanging', async () => {
    // A store that accepted the command and never answers (blocked by a slow command, failing over). A fake
    // of the script boundary: a real Redis cannot be made to hang here without stalling every other test.
    const stuck = { evalsha: () => new Promise<never>(() => undefined) } as unknown as Redis;
    const svc = new ReservationService({ redis: stuck, keys: budgetKeys('never'), retentionMs: 1000, timeoutMs: 50 });
    await assert.rejects(
      svc.reserve({ scope: 'tenant:x', unit: 'TOKENS', amount: 1, idempotencyKey: 'z' }),
      (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE' && e.statusCode === 503 && /did not answer within 50 ms/.test(e.message),
    );
  });
});
