/**
 * Ids are global, and a pipeline's data (its strategies' statistics, learner events, experiment arms) lives under
 * its id. So an id freed by a delete must not hand one tenant's data to another. Before: after acme deleted
 * pipeline `p`, beta created `p` and a strategy `s1` on it and read acme's 20 outcomes in
 * `GET /v1/strategies/s1/stats`, and acme's running experiment on `p` was listed to beta and routed beta's traffic;
 * an experiment id re-created after a delete showed the earlier experiment's audit trail. The id stays with its
 * tenant, and a delete deletes the data: the owning tenant gets the id back empty (before, with acme's 20 outcomes).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('id-reuse');
const OPERATOR = 'id-reuse-operator-key-0123456789abcdef';
const P = { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] };
const AB = (pipeline: string) => ({ pipeline, variants: [{ name: 'c', strategy: 's1', weight: 1 }, { name: 't', strategy: 's2', weight: 1 }] });
let rt: Running;
const key = {} as Record<'acme' | 'beta' | 'op', string>;

const call = async (k: string, method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) => {
  const r = await rt.app!.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${k}`, ...headers }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, body: r.body ? (r.json() as Record<string, unknown>) : {} };
};

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ADMIN_KEY: OPERATOR });
  key.op = OPERATOR;
  for (const t of ['acme', 'beta'] as const) key[t] = String((await call(OPERATOR, 'POST', '/v1/keys', { tenant: t, role: 'admin', name: 'reuse' })).body.key);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('an id freed by a delete', () => {
  it('keeps a pipeline id with its tenant: another tenant cannot re-create it and read what is kept under it', async () => {
    assert.equal((await call(key.acme, 'PUT', '/v1/pipelines/p', P)).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/strategies/s1', { pipeline: 'p', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/strategies/s2', { pipeline: 'p', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/pipelines/p/features', { features: [{ name: 'task', type: 'categorical', values: ['x'] }] })).status, 200);
    for (let i = 0; i < 20; i++) {
      const d = await call(key.acme, 'POST', '/v1/allocations', { pipeline: 'p', strategy: 's1' });
      assert.equal((await call(key.acme, 'POST', '/v1/outcomes', { decisionId: d.body.decisionId, quality: 0.9 })).status, 202);
    }
    await eventually(async () => (await call(key.acme, 'GET', '/v1/strategies/s1/stats')).body.count === 20);

    // An experiment holds its pipeline and its variants' strategies.
    assert.equal((await call(key.acme, 'PUT', '/v1/experiments/e', AB('p'))).status, 200);
    assert.equal((await call(key.acme, 'POST', '/v1/experiments/e/start')).status, 200);
    const inUse = await call(key.acme, 'DELETE', '/v1/strategies/s2');
    assert.equal(inUse.status, 409);
    assert.equal(inUse.body.code, 'STRATEGY_IN_USE');
    assert.match(String(inUse.body.message), /experiment "e" \(running\)/);
    const held = await call(key.acme, 'DELETE', '/v1/pipelines/p');
    assert.equal(held.status, 409);
    assert.equal(held.body.code, 'PIPELINE_IN_USE');
    assert.equal((await call(key.acme, 'POST', '/v1/experiments/e/stop')).status, 200);
    assert.equal((await call(key.acme, 'DELETE', '/v1/pipelines/p')).status, 409, 'a stopped experiment still holds its pipeline until deleted');
    assert.equal((await call(key.acme, 'DELETE', '/v1/experiments/e')).status, 204);
    assert.equal((await call(key.acme, 'DELETE', '/v1/pipelines/p')).status, 204);
    // Its strategies, feature declaration and model document went with it.
    assert.equal((await call(key.op, 'GET', '/v1/strategies/s1')).status, 404);
    assert.equal((await call(key.op, 'GET', '/v1/pipelines/p/features')).status, 404);

    // Another tenant, or an operator creating for it, is refused the id: same answer as for a live pipeline.
    const taken = await call(key.beta, 'PUT', '/v1/pipelines/p', P);
    assert.equal(taken.status, 409);
    assert.equal(taken.body.code, 'ID_TAKEN');
    assert.equal((await call(key.op, 'PUT', '/v1/pipelines/p', P, { 'x-apportion-tenant': 'beta' })).status, 409);
    assert.equal((await call(key.beta, 'GET', '/v1/strategies/s1/stats', undefined)).status, 404);
    // The owning tenant gets its id back, empty: the delete deleted what was kept under it.
    assert.equal((await call(key.acme, 'PUT', '/v1/pipelines/p', P)).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/strategies/s1', { pipeline: 'p', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.acme, 'GET', '/v1/strategies/s1/stats')).body.count, 0);
    assert.equal((await call(key.beta, 'GET', '/v1/strategies/s1/stats')).status, 404);
    // And another tenant still cannot take the id while acme holds it again.
    assert.equal((await call(key.beta, 'PUT', '/v1/pipelines/p', P)).body.code, 'ID_TAKEN');
    // An operator re-creating an id without naming a tenant re-creates it for its tenant.
    assert.equal((await call(key.acme, 'DELETE', '/v1/pipelines/p')).status, 204);
    assert.equal((await call(key.op, 'PUT', '/v1/pipelines/p', P)).status, 200);
    assert.equal((await call(key.acme, 'GET', '/v1/pipelines/p')).status, 200, 'acme’s again');
    assert.equal((await call(key.beta, 'GET', '/v1/pipelines/p')).status, 404);
  });

  it('a pipeline written before owners were recorded keeps its id with its tenant when deleted', async () => {
    assert.equal((await call(key.acme, 'PUT', '/v1/pipelines/legacy', P)).status, 200);
    // As a deployment upgraded from before the owners record has it: the document carries its tenant, no record.
    await rt.core.redis.hdel(rt.core.keys.configOwners('pipelines'), 'legacy');
    assert.equal(await rt.core.store.ownerOf('pipelines', 'legacy'), undefined);
    assert.equal((await call(key.acme, 'DELETE', '/v1/pipelines/legacy')).status, 204);
    assert.equal(await rt.core.store.ownerOf('pipelines', 'legacy'), 'acme');
    assert.equal((await call(key.beta, 'PUT', '/v1/pipelines/legacy', P)).body.code, 'ID_TAKEN');
  });

  it('an experiment id re-created after a delete, by another tenant, starts with an empty audit trail', async () => {
    assert.equal((await call(key.acme, 'PUT', '/v1/strategies/s1', { pipeline: 'p', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/strategies/s2', { pipeline: 'p', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.acme, 'PUT', '/v1/experiments/x', AB('p'))).status, 200);
    assert.equal((await call(key.acme, 'POST', '/v1/experiments/x/start')).status, 200);
    assert.equal((await call(key.acme, 'POST', '/v1/experiments/x/stop', { reason: 'acme secret reason' })).status, 200);
    assert.equal((await call(key.acme, 'DELETE', '/v1/experiments/x')).status, 204);
    // beta's own pipeline and strategies (other ids: s1 and s2 are acme's), and an experiment under the freed id.
    assert.equal((await call(key.beta, 'PUT', '/v1/pipelines/q', P)).status, 200);
    assert.equal((await call(key.beta, 'PUT', '/v1/strategies/q1', { pipeline: 'q', kind: 'uniform' })).status, 200);
    assert.equal((await call(key.beta, 'PUT', '/v1/strategies/q2', { pipeline: 'q', kind: 'uniform' })).status, 200);
    const mine = { pipeline: 'q', variants: [{ name: 'c', strategy: 'q1', weight: 1 }, { name: 't', strategy: 'q2', weight: 1 }] };
    assert.equal((await call(key.beta, 'PUT', '/v1/experiments/x', mine)).status, 200);
    const trail = (await call(key.beta, 'GET', '/v1/experiments/x/audit')).body.items as { action: string }[];
    assert.deepEqual(
      trail.map((a) => a.action),
      ['put'],
      'only beta’s own change',
    );
    assert.ok(!JSON.stringify(trail).includes('acme secret reason'));
  });
});
