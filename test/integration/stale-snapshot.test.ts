/**
 * Read-your-writes across instances: a pipeline written through one instance and used through another a moment
 * later, before the second one's snapshot has received the change (pub/sub delivers it within milliseconds; here
 * the write goes straight to the store, so the second instance has certainly not seen it when the request arrives).
 * Before, the second instance answered 404 PIPELINE_NOT_FOUND every time (30 of 30); now a "not found" decided on a
 * snapshot older than Redis is decided again once on the reloaded snapshot — the tenant rule included, so another
 * tenant's new pipeline is still "not found" to a tenant key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('stale-snapshot');
const OPERATOR = 'stale-snapshot-operator-key-0123456789';
const PIPELINE = { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] };
let one: Running;
let two: Running;
const key = {} as Record<'acme' | 'beta', string>;

const call = (rt: Running, k: string, method: 'POST' | 'PUT', url: string, payload: object) =>
  rt.app!.inject({ method, url, headers: { authorization: `Bearer ${k}` }, payload });

before(async () => {
  one = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  two = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  for (const t of ['acme', 'beta'] as const) key[t] = (await call(one, OPERATOR, 'POST', '/v1/keys', { tenant: t, role: 'admin', name: 'stale' })).json().key;
});
after(async () => {
  await one.close();
  await two.close();
  await dropPrefix(prefix);
});

describe('a request reaching an instance whose snapshot has not yet received a write', () => {
  it('allocates for a pipeline written through another instance a moment earlier', async () => {
    for (let i = 0; i < 30; i++) {
      await one.core.store.put('pipelines', `p${i}`, { ...PIPELINE, tenant: 'acme' });
      const r = await call(two, key.acme, 'POST', '/v1/allocations', { pipeline: `p${i}` });
      assert.equal(r.statusCode, 200, `p${i}: ${r.body}`);
    }
  });

  it('registers a strategy for it', async () => {
    for (let i = 0; i < 10; i++) {
      await one.core.store.put('pipelines', `q${i}`, { ...PIPELINE, tenant: 'acme' });
      const r = await call(two, key.acme, 'PUT', `/v1/strategies/q${i}-even`, { pipeline: `q${i}`, kind: 'uniform' });
      assert.equal(r.statusCode, 200, `q${i}: ${r.body}`);
    }
  });

  it('still answers another tenant that the new pipeline does not exist', async () => {
    for (let i = 0; i < 10; i++) {
      await one.core.store.put('pipelines', `r${i}`, { ...PIPELINE, tenant: 'acme' });
      const r = await call(two, key.beta, 'POST', '/v1/allocations', { pipeline: `r${i}` });
      assert.equal(r.statusCode, 404, `r${i}: ${r.body}`);
      assert.equal(r.json().code, 'PIPELINE_NOT_FOUND');
      const s = await call(two, key.beta, 'PUT', `/v1/strategies/r${i}-even`, { pipeline: `r${i}`, kind: 'uniform' });
      assert.equal(s.statusCode, 404, `r${i}: ${s.body}`);
    }
  });
});
