import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { sweep } from '../../src/budgets/jobs.js';
import { BudgetLedger } from '../../src/budgets/ledger.js';
import { budgetOverview } from '../../src/budgets/overview.js';
import { AppError } from '../../src/errors/app-error.js';
import { connectRedis } from '../../src/redis/connection.js';
import { dropPrefix, eventually, REDIS_URL, testPrefix } from '../helpers/env.js';
import { harness, readLedger, type Harness } from './harness.js';

/**
 * The budget-tenants index (the sweeper's and the console overview's list of tenants) must list every tenant whose
 * budget exists, including one whose PUT was answered 503 while its script still ran later.
 */

/** Blocks this connection only (see deadline.test.ts): commands queued behind the BLPOP run when it returns. */
function stall(redis: Redis, seconds: number): Promise<unknown> {
  return redis.blpop(`stall-${randomUUID()}`, seconds).catch(() => undefined);
}

describe('a budget PUT answered 503 whose script ran late still lists its tenant', () => {
  const prefix = testPrefix('budget-tenant-index');
  let h: Harness;
  let conn: Redis;
  let ledger: BudgetLedger;
  before(async () => {
    h = await harness(prefix);
    conn = await connectRedis(REDIS_URL, { name: 'budgets-tenant-index' });
    ledger = new BudgetLedger({ redis: conn, keys: h.keys, idempotencyTtlMs: 3_600_000, now: () => h.clock.now });
  });
  after(async () => {
    await conn.quit();
    await h.close();
    await dropPrefix(prefix);
  });

  it('its expired reservation is swept and the overview lists it', async () => {
    // The put's script waits behind a 3 s stall: the put is answered 503 after its 2 s store timeout.
    const blocked = stall(conn, 3);
    await assert.rejects(ledger.put({ scope: 'tenant:late', unit: 'TOKENS', allocated: 1000 }), (e: unknown) => e instanceof AppError && e.code === 'REDIS_UNAVAILABLE');
    await blocked;
    // The client stops waiting for the BLPOP after its command timeout; Redis answers again once the stall ends.
    await eventually(() => conn.ping(), 30_000);
    const key = h.keys.budget('late', 'TOKENS', 'tenant:late');
    assert.equal((await readLedger(h.redis, key)).a, 1000, 'the late script created the budget');
    assert.equal(await h.redis.sismember(h.keys.tenants(), 'late'), 1, 'and its tenant is on budget-tenants');

    const g = await h.reservations.reserve({ scope: 'tenant:late', unit: 'TOKENS', amount: 600, ttlMs: 1000, idempotencyKey: 'late-1' });
    assert.ok('id' in g);
    assert.ok((await budgetOverview(h.redis, h.keys)).tenants.includes('late'), 'the overview lists the tenant');
    h.clock.now += 5000;
    assert.equal(await sweep(h), 1, 'the sweeper expired the reservation');
    const l = await readLedger(h.redis, key);
    assert.deepEqual([l.r, l.v], [1000, 0], 'its funds are back');
    assert.equal((await h.reservations.get(g.id)).state, 'EXPIRED');
  });

  it('a listed tenant without budgets is skipped by the overview and harmless to the sweeper', async () => {
    // What a PUT whose script never ran leaves behind.
    await h.redis.sadd(h.keys.tenants(), 'ghost');
    await h.ledger.put({ scope: 'tenant:real', unit: 'TOKENS', allocated: 10 });
    const o = await budgetOverview(h.redis, h.keys, 1);
    assert.deepEqual(o.tenants, ['late'], 'ghost (sorted first) is skipped; late fills the one place');
    assert.equal(o.truncated, true, 'real is past the limit');
    assert.deepEqual((await budgetOverview(h.redis, h.keys)).tenants, ['late', 'real']);
    assert.equal(await sweep(h), 0);
  });

  it('deleting a tenant’s last budget still takes it off the index', async () => {
    await h.ledger.put({ scope: 'tenant:gone', unit: 'TOKENS', allocated: 10 });
    assert.equal(await h.redis.sismember(h.keys.tenants(), 'gone'), 1);
    await h.ledger.delete({ scope: 'tenant:gone', unit: 'TOKENS' });
    assert.equal(await h.redis.sismember(h.keys.tenants(), 'gone'), 0);
  });
});
