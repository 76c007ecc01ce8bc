/**
 * A tenant's requests that name another tenant's objects indirectly — an experiment variant's strategy, the strategy
 * an off-policy estimate is asked for, a layer an experiment claims — must answer exactly as for missing objects and
 * must not be blocked by the other tenant's objects. Before: a variant or `?strategy=` naming another tenant's
 * strategy answered 400 STRATEGY_PIPELINE_MISMATCH with that tenant's pipeline name (a missing one answers 404), and
 * layers were shared by all tenants: one tenant's experiment on [0, 1) of layer "main" refused every other tenant's
 * experiment in a layer of that name with 409 LAYER_OVERLAP, naming the experiment.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('cross-refs');
const OPERATOR = 'cross-refs-operator-key-0123456789abcdef';
const P = { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] };
let rt: Running;
const key = {} as Record<'acme' | 'globex' | 'acmeAnalyst', string>;

const call = async (k: string, method: string, url: string, payload?: unknown) => {
  const r = await rt.app!.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${k}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, body: r.body ? (r.json() as Record<string, unknown>) : {} };
};
const ok = async (k: string, method: string, url: string, payload?: unknown) => {
  const r = await call(k, method, url, payload);
  assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
};

before(async () => {
  rt = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  const mk = async (tenant: string, role: string) => String((await call(OPERATOR, 'POST', '/v1/keys', { tenant, role, name: `${tenant}-${role}` })).body.key);
  key.acme = await mk('acme', 'admin');
  key.acmeAnalyst = await mk('acme', 'analyst');
  key.globex = await mk('globex', 'admin');
  for (const [t, k] of [['acme', key.acme], ['globex', key.globex]] as const) {
    await ok(k, 'PUT', `/v1/pipelines/${t}-p`, P);
    await ok(k, 'PUT', `/v1/strategies/${t}-uniform`, { pipeline: `${t}-p`, kind: 'uniform' });
    await ok(k, 'PUT', `/v1/strategies/${t}-static`, { pipeline: `${t}-p`, kind: 'static', params: { shares: { a: 0.7, b: 0.3 } } });
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const variants = (second: string) => [
  { name: 'control', strategy: 'acme-uniform', weight: 1 },
  { name: 'treatment', strategy: second, weight: 1 },
];

describe('objects of another tenant named inside a request', () => {
  it("an experiment variant naming another tenant's strategy answers as a missing strategy", async () => {
    const missing = await call(key.acme, 'PUT', '/v1/experiments/acme-e1', { pipeline: 'acme-p', variants: variants('no-such-strategy') });
    const other = await call(key.acme, 'PUT', '/v1/experiments/acme-e1', { pipeline: 'acme-p', variants: variants('globex-static') });
    assert.equal(missing.status, 404);
    assert.equal(other.status, missing.status);
    assert.equal(other.body.code, 'STRATEGY_NOT_FOUND');
    assert.equal(other.body.message, 'body/variants/1/strategy: no strategy "globex-static"');
    assert.ok(!JSON.stringify(other.body).includes('globex-p'), 'the other tenant’s pipeline is not named');
    assert.equal((await call(key.acme, 'GET', '/v1/experiments/acme-e1')).status, 404, 'nothing was written');
    // The tenant's own strategy of another of its pipelines still says which pipeline it belongs to.
    await ok(key.acme, 'PUT', '/v1/pipelines/acme-q', P);
    await ok(key.acme, 'PUT', '/v1/strategies/acme-q-uniform', { pipeline: 'acme-q', kind: 'uniform' });
    const own = await call(key.acme, 'PUT', '/v1/experiments/acme-e1', { pipeline: 'acme-p', variants: variants('acme-q-uniform') });
    assert.equal(own.body.code, 'STRATEGY_PIPELINE_MISMATCH');
  });

  it("an off-policy estimate for another tenant's strategy answers as for a missing strategy, to every role", async () => {
    for (const k of [key.acme, key.acmeAnalyst]) {
      const missing = await call(k, 'GET', '/v1/pipelines/acme-p/ope?strategy=no-such-strategy');
      const other = await call(k, 'GET', '/v1/pipelines/acme-p/ope?strategy=globex-static');
      assert.equal(missing.status, 404);
      assert.equal(other.status, 404);
      assert.equal(other.body.code, 'STRATEGY_NOT_FOUND');
      assert.ok(!JSON.stringify(other.body).includes('globex-p'), 'the other tenant’s pipeline is not named');
    }
  });

  it('layers are per tenant: another tenant’s experiments neither block a range nor are named', async () => {
    const layered = (pipeline: string, strategy: string, range: [number, number]) => ({
      pipeline,
      variants: [
        { name: 'control', strategy: `${strategy}-uniform`, weight: 1 },
        { name: 'treatment', strategy: `${strategy}-static`, weight: 1 },
      ],
      layer: { id: 'main', range },
    });
    await ok(key.globex, 'PUT', '/v1/experiments/globex-secret-launch', layered('globex-p', 'globex', [0, 1]));
    await ok(key.globex, 'POST', '/v1/experiments/globex-secret-launch/start');
    const mine = await call(key.acme, 'PUT', '/v1/experiments/acme-layered', layered('acme-p', 'acme', [0, 0.5]));
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    // Within a tenant the layer still holds: an overlapping range of acme's own is refused, naming acme's experiment.
    await ok(key.acme, 'PUT', '/v1/pipelines/acme-r', P);
    await ok(key.acme, 'PUT', '/v1/strategies/acme-r-uniform', { pipeline: 'acme-r', kind: 'uniform' });
    await ok(key.acme, 'PUT', '/v1/strategies/acme-r-static', { pipeline: 'acme-r', kind: 'static', params: { shares: { a: 0.2, b: 0.8 } } });
    const overlap = await call(key.acme, 'PUT', '/v1/experiments/acme-layered-2', layered('acme-r', 'acme-r', [0.25, 0.75]));
    assert.equal(overlap.status, 409);
    assert.equal(overlap.body.code, 'LAYER_OVERLAP');
    assert.match(String(overlap.body.message), /overlaps experiment "acme-layered" \[0, 0\.5\)/);
    await ok(key.acme, 'PUT', '/v1/experiments/acme-layered-2', layered('acme-r', 'acme-r', [0.5, 1]));
  });
});
