/**
 * Deleting a tenant's last budget deletes what was kept for it. Before: its overruns stream (XLEN 232 in an external evaluation's
 * run) and threshold alerts stayed without expiry, and `budget-tenants` kept listing the tenant, for every tenant
 * that ever had budgets.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dropPrefix, testPrefix } from '../helpers/env.js';
import { keysWithoutTtl } from '../helpers/ttl-scan.js';
import { harness, type Harness } from './harness.js';

const prefix = testPrefix('budget-retention');
let h: Harness;
before(async () => {
  h = await harness(prefix);
});
after(async () => {
  await h.close();
  await dropPrefix(prefix);
});

const listed = async (t: string) => (await h.redis.sismember(h.keys.tenants(), t)) === 1;

describe('deleting a tenant’s budgets', () => {
  it('the last one takes the tenant’s overruns, alerts and index entry with it: no key without a TTL is left', async () => {
    await h.ledger.put({ scope: 'tenant:tr12', unit: 'TOKENS', allocated: 1000 });
    await h.ledger.put({ scope: 'tenant:tr12/agent:a', unit: 'TOKENS', allocated: 100 });
    // Crosses thresholds (alerts) and overruns its reservation (overruns).
    const g = await h.reservations.reserve({ scope: 'tenant:tr12/agent:a', unit: 'TOKENS', amount: 40, idempotencyKey: 'r1' });
    assert.ok('id' in g);
    const c = await h.reservations.commit(g.id, 90);
    assert.ok(c.overrun > 0);
    assert.ok((await h.redis.xlen(h.keys.overruns('tr12'))) > 0);
    assert.ok((await h.redis.xlen(h.keys.alerts('tr12'))) > 0);
    assert.ok(await listed('tr12'));
    const tag = `${h.keys.tag('tr12')}:*`;

    await h.ledger.delete({ scope: 'tenant:tr12/agent:a', unit: 'TOKENS' });
    assert.ok((await h.redis.xlen(h.keys.overruns('tr12'))) > 0, 'kept while the tenant has a budget');
    assert.ok(await listed('tr12'));
    await h.ledger.delete({ scope: 'tenant:tr12', unit: 'TOKENS' });
    assert.deepEqual(await keysWithoutTtl(h.redis, tag), [], 'nothing of the tenant kept without expiry');
    assert.equal(await listed('tr12'), false, 'no longer in the budget-tenants index');

    // A new budget lists the tenant again, and starts a fresh history.
    await h.ledger.put({ scope: 'tenant:tr12', unit: 'TOKENS', allocated: 10 });
    assert.ok(await listed('tr12'));
    assert.equal(await h.redis.xlen(h.keys.overruns('tr12')), 0);
  });
});
