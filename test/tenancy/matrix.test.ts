import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { newDecisionId } from '../../src/allocation/decisions.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * The access matrix, generated from the OpenAPI document: every route × every role (admin, analyst, client of
 * tenant `acme`) × own tenant / other tenant (`beta`), plus no key and a revoked key. The expectations below are
 * written independently of the server's rule tables; a route in the document without an entry here fails.
 */

const prefix = testPrefix('matrix');
const OPERATOR = 'matrix-operator-admin-key-0123';
let rt: Running;
type Role = 'admin' | 'analyst' | 'client';
type T = 'acme' | 'beta';
const ROLES: readonly Role[] = ['admin', 'analyst', 'client'];
const keys = {} as Record<T, Record<Role, string>> & { revoked: string };
const keyIds = {} as Record<T, string>;
let seq = 0;
const fresh = (s: string) => `${s}-${++seq}`;

interface Req {
  method: string;
  url: string;
  payload?: unknown;
  query?: Record<string, string>;
}

async function call(r: Req, key?: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return rt.app!.inject({
    method: r.method as 'GET',
    url: r.url,
    ...(r.query ? { query: r.query } : {}),
    ...(r.payload !== undefined ? { payload: r.payload as object } : {}),
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
  });
}
/** As the operator (env admin key), for fixtures; `tenant` names the owner of a new pipeline. */
async function op(method: string, url: string, payload?: unknown, tenant?: T): Promise<any> {
  const r = await call({ method, url, ...(payload !== undefined ? { payload } : {}) }, OPERATOR, tenant ? { 'x-apportion-tenant': tenant } : {});
  assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
  return r.statusCode === 204 ? undefined : r.json();
}

const U = 'USD_MICROCENTS';
const AB = (t: T) => ({ pipeline: `p-${t}`, variants: [{ name: 'control', strategy: `even-${t}`, weight: 1 }, { name: 'lean', strategy: `lean-${t}`, weight: 1 }], control: 'control' });
const SPANS = (traceId: string, session: string, customer: string) => ({
  spans: [{ traceId, spanId: 'root', sessionId: session, customer, agent: 'coordinator', kind: 'agent', start: '2026-11-23T10:00:00Z', end: '2026-11-23T10:00:09Z' }],
});
const fixtures = {} as Record<T, { reservation: string; decision: string }>;

async function newReservation(t: T): Promise<string> {
  return (await op('POST', '/v1/reservations', { scope: `tenant:${t}`, unit: U, amount: 1000, idempotencyKey: fresh('r') })).id;
}

before(async () => {
  rt = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  for (const t of ['acme', 'beta'] as const) {
    keys[t] = {} as Record<Role, string>;
    for (const role of ROLES) {
      const k = await op('POST', '/v1/keys', { tenant: t, role, name: `${t}-${role}` });
      keys[t][role] = k.key;
      if (role === 'admin') keyIds[t] = k.id;
    }
    await op('PUT', `/v1/pipelines/p-${t}`, FIVE_AGENTS, t);
    await op('PUT', `/v1/strategies/even-${t}`, { pipeline: `p-${t}`, kind: 'uniform' });
    await op('PUT', `/v1/strategies/lean-${t}`, { pipeline: `p-${t}`, kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 3, validator: 1, formatter: 1 } } });
    await op('PUT', `/v1/experiments/e-${t}`, AB(t));
    await op('PUT', `/v1/budgets`, { scope: `tenant:${t}`, unit: U, allocated: 1_000_000_000 });
    const decision = (await op('POST', '/v1/allocations', { pipeline: `p-${t}` })).decisionId;
    fixtures[t] = { reservation: await newReservation(t), decision };
    const w = await call({ method: 'POST', url: '/v1/spans', payload: SPANS('trace-1', `sess-${t}`, t) }, keys[t].client);
    assert.equal(w.statusCode, 200, w.body);
  }
  const revoked = await op('POST', '/v1/keys', { tenant: 'acme', role: 'admin', name: 'to revoke' });
  await op('DELETE', `/v1/keys/${revoked.id}`);
  keys.revoked = revoked.key;
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

/**
 * One rule per route. `roles`: who may call it. `req(t)`: a request addressing tenant t's objects (built fresh
 * when the request changes or deletes them). `other`: what a caller of acme gets when addressing beta's objects:
 * a status and code, or a check of the response (lists and routes that take the tenant from the key).
 * `own`: the status for the caller's own tenant (default: anything but 401/403 and the `other` refusal, < 500).
 */
interface Rule {
  roles: readonly Role[] | 'operator' | 'public';
  req: (t: T, caller: string) => Req | Promise<Req>;
  other: readonly [number, string] | ((res: LightMyRequestResponse) => void);
  own?: number;
  /** For public routes: the status without a key and with a revoked one. */
  anonymous?: { 'no key': number; 'revoked key': number };
}
const READ: Role[] = ['admin', 'analyst'];
const DATA: Role[] = ['admin', 'client'];
const DATA_READ: Role[] = ['admin', 'analyst', 'client'];
const ADMIN: Role[] = ['admin'];
const onlyOwn = (field: string) => (res: LightMyRequestResponse) => {
  assert.equal(res.statusCode, 200, res.body);
  const items = res.json().items as Record<string, unknown>[];
  assert.ok(items.length > 0, 'own items listed');
  for (const i of items) assert.ok(!String(i[field]).includes('beta'), `another tenant's item listed: ${JSON.stringify(i)}`);
};
const NF = (code: string) => [404, code] as const;

const RULES: Record<string, Rule> = {
  'POST /v1/keys': { roles: ADMIN, req: (t) => ({ method: 'POST', url: '/v1/keys', payload: { tenant: t, role: 'client', name: 'm' } }), other: [403, 'FORBIDDEN'], own: 201 },
  'GET /v1/keys': { roles: ADMIN, req: () => ({ method: 'GET', url: '/v1/keys' }), other: onlyOwn('tenant'), own: 200 },
  'DELETE /v1/keys/{id}': {
    roles: ADMIN,
    req: async (t) => ({ method: 'DELETE', url: `/v1/keys/${t === 'beta' ? keyIds.beta : (await op('POST', '/v1/keys', { tenant: t, role: 'client', name: 'x' })).id}` }),
    other: NF('KEY_NOT_FOUND'),
    own: 200,
  },
  'POST /v1/session': {
    roles: 'public',
    req: (_t, caller) => ({ method: 'POST', url: '/v1/session', payload: { key: caller } }),
    other: (r) => assert.equal(r.statusCode, 204),
    own: 204,
    anonymous: { 'no key': 400, 'revoked key': 401 },
  },
  'DELETE /v1/session': { roles: 'public', req: () => ({ method: 'DELETE', url: '/v1/session' }), other: (r) => assert.equal(r.statusCode, 204), own: 204, anonymous: { 'no key': 204, 'revoked key': 204 } },
  'GET /v1/whoami': { roles: DATA_READ, req: () => ({ method: 'GET', url: '/v1/whoami' }), other: (r) => assert.equal(r.json().tenant, 'acme'), own: 200 },
  'PUT /v1/pipelines/{id}': { roles: ADMIN, req: (t) => ({ method: 'PUT', url: `/v1/pipelines/${t === 'beta' ? 'p-beta' : fresh('pn')}`, payload: FIVE_AGENTS }), other: [409, 'ID_TAKEN'], own: 200 },
  'GET /v1/pipelines/{id}': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}` }), other: NF('PIPELINE_NOT_FOUND'), own: 200 },
  'DELETE /v1/pipelines/{id}': {
    roles: ADMIN,
    req: async (t) => {
      const id = t === 'beta' ? 'p-beta' : fresh('pd');
      if (t === 'acme') await op('PUT', `/v1/pipelines/${id}`, FIVE_AGENTS, 'acme');
      return { method: 'DELETE', url: `/v1/pipelines/${id}` };
    },
    other: NF('PIPELINE_NOT_FOUND'),
    own: 204,
  },
  'GET /v1/pipelines': { roles: READ, req: () => ({ method: 'GET', url: '/v1/pipelines' }), other: onlyOwn('id'), own: 200 },
  'PUT /v1/strategies/{id}': { roles: ADMIN, req: (t) => ({ method: 'PUT', url: `/v1/strategies/${fresh('sn')}`, payload: { pipeline: `p-${t}`, kind: 'uniform' } }), other: NF('PIPELINE_NOT_FOUND'), own: 200 },
  'GET /v1/strategies/{id}': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/strategies/even-${t}` }), other: NF('STRATEGY_NOT_FOUND'), own: 200 },
  'DELETE /v1/strategies/{id}': {
    roles: ADMIN,
    req: async (t) => {
      const id = t === 'beta' ? 'lean-beta' : fresh('sd');
      if (t === 'acme') await op('PUT', `/v1/strategies/${id}`, { pipeline: 'p-acme', kind: 'uniform' });
      return { method: 'DELETE', url: `/v1/strategies/${id}` };
    },
    other: NF('STRATEGY_NOT_FOUND'),
    own: 204,
  },
  'GET /v1/strategies': { roles: READ, req: () => ({ method: 'GET', url: '/v1/strategies' }), other: onlyOwn('pipeline'), own: 200 },
  'GET /v1/strategies/{id}/stats': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/strategies/even-${t}/stats` }), other: NF('STRATEGY_NOT_FOUND'), own: 200 },
  'POST /v1/allocations': { roles: DATA, req: (t) => ({ method: 'POST', url: '/v1/allocations', payload: { pipeline: `p-${t}` } }), other: NF('PIPELINE_NOT_FOUND'), own: 200 },
  'POST /v1/outcomes': {
    roles: DATA,
    req: async (t) => ({ method: 'POST', url: '/v1/outcomes', payload: { decisionId: t === 'beta' ? fixtures.beta.decision : (await op('POST', '/v1/allocations', { pipeline: 'p-acme' })).decisionId, quality: 0.5 } }),
    other: NF('DECISION_NOT_FOUND'),
    own: 202,
  },
  'PUT /v1/budgets': { roles: ADMIN, req: (t) => ({ method: 'PUT', url: '/v1/budgets', payload: { scope: `tenant:${t}/workspace:${fresh('w')}`, unit: U, allocated: 1000 } }), other: NF('BUDGET_NOT_FOUND'), own: 201 },
  'DELETE /v1/budgets': {
    roles: ADMIN,
    req: async (t) => {
      const scope = `tenant:${t}/workspace:${fresh('wd')}`;
      await op('PUT', '/v1/budgets', { scope, unit: U, allocated: 1000 });
      return { method: 'DELETE', url: '/v1/budgets', query: { scope, unit: U } };
    },
    other: NF('BUDGET_NOT_FOUND'),
    own: 200,
  },
  'POST /v1/budgets/{op}': { roles: ADMIN, req: (t) => ({ method: 'POST', url: '/v1/budgets/fund', payload: { scope: `tenant:${t}`, unit: U, amount: 1, idempotencyKey: fresh('f') } }), other: NF('BUDGET_NOT_FOUND'), own: 200 },
  'GET /v1/balances': { roles: DATA_READ, req: (t) => ({ method: 'GET', url: '/v1/balances', query: { scope: `tenant:${t}` } }), other: NF('BUDGET_NOT_FOUND'), own: 200 },
  'POST /v1/reservations': { roles: DATA, req: (t) => ({ method: 'POST', url: '/v1/reservations', payload: { scope: `tenant:${t}`, unit: U, amount: 10, idempotencyKey: fresh('rv') } }), other: NF('BUDGET_NOT_FOUND'), own: 201 },
  'GET /v1/reservations/{id}': { roles: DATA_READ, req: (t) => ({ method: 'GET', url: `/v1/reservations/${fixtures[t].reservation}` }), other: NF('RESERVATION_NOT_FOUND'), own: 200 },
  'POST /v1/reservations/{id}/draws': {
    roles: DATA,
    req: async (t) => ({ method: 'POST', url: `/v1/reservations/${t === 'beta' ? fixtures.beta.reservation : await newReservation(t)}/draws`, payload: { amount: 10, idempotencyKey: fresh('d') } }),
    other: NF('RESERVATION_NOT_FOUND'),
    own: 201,
  },
  'POST /v1/reservations/{id}/commit': {
    roles: DATA,
    req: async (t) => ({ method: 'POST', url: `/v1/reservations/${t === 'beta' ? fixtures.beta.reservation : await newReservation(t)}/commit`, payload: { amount: 5 } }),
    other: NF('RESERVATION_NOT_FOUND'),
    own: 200,
  },
  'POST /v1/reservations/{id}/release': {
    roles: DATA,
    req: async (t) => ({ method: 'POST', url: `/v1/reservations/${t === 'beta' ? fixtures.beta.reservation : await newReservation(t)}/release` }),
    other: NF('RESERVATION_NOT_FOUND'),
    own: 200,
  },
  'POST /v1/reservations/{id}/extend': {
    roles: DATA,
    req: async (t) => ({ method: 'POST', url: `/v1/reservations/${t === 'beta' ? fixtures.beta.reservation : await newReservation(t)}/extend`, payload: { ttlMs: 60_000 } }),
    other: NF('RESERVATION_NOT_FOUND'),
    own: 200,
  },
  'PUT /v1/experiments/{id}': { roles: ADMIN, req: (t) => ({ method: 'PUT', url: `/v1/experiments/${fresh('en')}`, payload: AB(t) }), other: NF('PIPELINE_NOT_FOUND'), own: 200 },
  'GET /v1/experiments/{id}': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/experiments/e-${t}` }), other: NF('EXPERIMENT_NOT_FOUND'), own: 200 },
  'DELETE /v1/experiments/{id}': {
    roles: ADMIN,
    req: async (t) => {
      const id = t === 'beta' ? 'e-beta' : fresh('ed');
      if (t === 'acme') await op('PUT', `/v1/experiments/${id}`, AB('acme'));
      return { method: 'DELETE', url: `/v1/experiments/${id}` };
    },
    other: NF('EXPERIMENT_NOT_FOUND'),
    own: 204,
  },
  'GET /v1/experiments': { roles: READ, req: () => ({ method: 'GET', url: '/v1/experiments' }), other: onlyOwn('pipeline'), own: 200 },
  ...Object.fromEntries(
    (['start', 'pause', 'resume', 'stop', 'rollback', 'evaluate'] as const).map((a) => [
      `POST /v1/experiments/{id}/${a}`,
      {
        roles: ADMIN,
        req: async (t: T) => {
          const id = t === 'beta' ? 'e-beta' : fresh(`ex-${a}`);
          if (t === 'acme') await op('PUT', `/v1/experiments/${id}`, AB('acme'));
          return { method: 'POST', url: `/v1/experiments/${id}/${a}` };
        },
        other: NF('EXPERIMENT_NOT_FOUND'),
      } satisfies Rule,
    ]),
  ),
  'POST /v1/experiments/{id}/srm/acknowledge': {
    roles: ADMIN,
    req: async (t) => {
      const id = t === 'beta' ? 'e-beta' : fresh('ex-srm');
      if (t === 'acme') await op('PUT', `/v1/experiments/${id}`, AB('acme'));
      return { method: 'POST', url: `/v1/experiments/${id}/srm/acknowledge`, payload: { reason: 'checked the assignment logs' } };
    },
    other: NF('EXPERIMENT_NOT_FOUND'),
  },
  // The console's listings take the tenant from the key: acme's key lists acme's budgets, reservations, alerts
  // and sessions (by the ids it sent), never beta's.
  'GET /v1/console/budgets': {
    roles: READ,
    req: () => ({ method: 'GET', url: '/v1/console/budgets' }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      const ov = r.json() as { tenants: string[]; reservations: { tenant: string; id: string }[]; alerts: { tenant: string }[] };
      assert.deepEqual(ov.tenants, ['acme']);
      assert.ok(ov.reservations.some((x) => x.id === fixtures.acme.reservation), 'own live reservation listed');
      for (const x of [...ov.reservations, ...ov.alerts]) assert.equal(x.tenant, 'acme', `another tenant's entry listed: ${JSON.stringify(x)}`);
    },
    own: 200,
  },
  'GET /v1/console/sessions': {
    roles: READ,
    req: () => ({ method: 'GET', url: '/v1/console/sessions' }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      const { sessions } = r.json() as { sessions: string[] };
      assert.ok(sessions.includes('sess-acme'), `own session listed: ${r.body}`);
      for (const x of sessions) assert.ok(!x.includes('beta') && !x.includes('~'), `another tenant's or a namespaced session listed: ${x}`);
    },
    own: 200,
  },
  'POST /v1/experiments/{id}/promote': { roles: ADMIN, req: (t) => ({ method: 'POST', url: `/v1/experiments/e-${t}/promote`, payload: { variant: 'lean' } }), other: NF('EXPERIMENT_NOT_FOUND') },
  'GET /v1/experiments/{id}/results': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/experiments/e-${t}/results` }), other: NF('EXPERIMENT_NOT_FOUND'), own: 200 },
  'GET /v1/experiments/{id}/audit': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/experiments/e-${t}/audit` }), other: NF('EXPERIMENT_NOT_FOUND'), own: 200 },
  // The tenant of a span is the key's: a body naming another tenant's trace, session and customer still
  // writes only into the caller's own namespace (checked in detail by isolation.test.ts).
  'POST /v1/spans': { roles: DATA, req: (t) => ({ method: 'POST', url: '/v1/spans', payload: SPANS('trace-1', `sess-${t}`, t) }), other: (r) => assert.equal(r.statusCode, 200, r.body), own: 200 },
  'POST /v1/traces': { roles: DATA, req: () => ({ method: 'POST', url: '/v1/traces', payload: { resourceSpans: [] } }), other: (r) => assert.equal(r.statusCode, 200, r.body), own: 200 },
  'GET /v1/sessions/{id}/cost-tree': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/sessions/sess-${t}/cost-tree` }), other: NF('SESSION_NOT_FOUND'), own: 200 },
  'GET /v1/reports/costs': {
    roles: READ,
    req: () => ({ method: 'GET', url: '/v1/reports/costs', query: { groupBy: 'customer', from: '2026-11-01', to: '2026-11-30' } }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      for (const row of r.json().rows as { key: string }[]) assert.equal(row.key, 'acme');
    },
    own: 200,
  },
  'GET /v1/pipelines/{id}/envelopes': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}/envelopes` }), other: NF('PIPELINE_NOT_FOUND'), own: 200 },
  'PUT /v1/price-overrides/{tenant}': { roles: 'operator', req: (t) => ({ method: 'PUT', url: `/v1/price-overrides/${t}`, payload: { models: [] } }), other: [403, 'FORBIDDEN'] },
  'GET /v1/price-overrides/{tenant}': { roles: 'operator', req: (t) => ({ method: 'GET', url: `/v1/price-overrides/${t}` }), other: [403, 'FORBIDDEN'] },
  'DELETE /v1/price-overrides/{tenant}': { roles: 'operator', req: (t) => ({ method: 'DELETE', url: `/v1/price-overrides/${t}` }), other: [403, 'FORBIDDEN'] },
  'PUT /v1/pipelines/{id}/features': {
    roles: ADMIN,
    req: (t) => ({ method: 'PUT', url: `/v1/pipelines/p-${t}/features`, payload: { features: [{ name: 'taskType', type: 'categorical', values: ['a', 'b'] }] } }),
    other: NF('PIPELINE_NOT_FOUND'),
    own: 200,
  },
  'GET /v1/pipelines/{id}/features': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}/features` }), other: NF('PIPELINE_NOT_FOUND') },
  'GET /v1/models/{pipeline}': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/models/p-${t}` }), other: NF('PIPELINE_NOT_FOUND') },
  'POST /v1/models/{pipeline}/rollback': { roles: ADMIN, req: (t) => ({ method: 'POST', url: `/v1/models/p-${t}/rollback`, payload: { version: 1 } }), other: NF('PIPELINE_NOT_FOUND') },
  'POST /v1/models/{pipeline}/train': { roles: ADMIN, req: (t) => ({ method: 'POST', url: `/v1/models/p-${t}/train` }), other: NF('PIPELINE_NOT_FOUND') },
  'GET /v1/pipelines/{id}/ope': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}/ope`, query: { strategy: `even-${t}` } }), other: NF('PIPELINE_NOT_FOUND') },
  'GET /v1/pipelines/{id}/shadow': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}/shadow`, query: { strategy: `even-${t}` } }), other: NF('PIPELINE_NOT_FOUND') },
  // Local evaluation: the synced state holds only the caller's tenant's pipelines; ingested records for another
  // tenant's pipeline are refused one by one.
  'GET /v1/sync': {
    roles: DATA_READ,
    req: () => ({ method: 'GET', url: '/v1/sync' }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      const ids = (r.json().state.kinds.pipelines as { id: string }[]).map((p) => p.id);
      assert.ok(ids.includes('p-acme'), 'own pipeline synced');
      for (const id of ids) assert.ok(!id.includes('beta'), `another tenant's pipeline synced: ${id}`);
      for (const s of r.json().state.kinds.strategies as { doc: { pipeline: string } }[]) assert.equal(s.doc.pipeline, 'p-acme');
    },
    own: 200,
  },
  'GET /v1/sync/stream': {
    roles: DATA_READ,
    req: () => ({ method: 'GET', url: '/v1/sync/stream', query: { once: 'true' } }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      assert.match(r.body, /"etag":"\\"t-[A-Za-z0-9_-]+\\""/);
    },
    own: 200,
  },
  'POST /v1/decisions/batch': {
    roles: DATA,
    req: (t) => ({
      method: 'POST',
      url: '/v1/decisions/batch',
      payload: { decisions: [{ id: newDecisionId(), pipeline: `p-${t}`, pipelineVersion: 1, strategy: '@uniform', strategyVersion: 0, strategyKind: 'uniform', reason: 'default', budgets: {}, totalTokens: 100, features: {}, ts: Date.now() }] },
    }),
    other: (r) => {
      assert.equal(r.statusCode, 200, r.body);
      assert.deepEqual(r.json().rejected.map((x: { code: string }) => x.code), ['PIPELINE_NOT_FOUND']);
      assert.equal(r.json().accepted, 0);
    },
    own: 200,
  },
  'GET /v1/pipelines/{id}/logs': { roles: READ, req: (t) => ({ method: 'GET', url: `/v1/pipelines/p-${t}/logs` }), other: NF('PIPELINE_NOT_FOUND') },
};

function routesOf(): string[] {
  const doc = rt.app!.swagger() as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(doc.paths).flatMap(([p, ms]) => Object.keys(ms).map((m) => `${m.toUpperCase()} ${p}`));
}

const expectStatus = (res: LightMyRequestResponse, status: number, code: string | undefined, what: string) => {
  assert.equal(res.statusCode, status, `${what}: ${res.body}`);
  if (code !== undefined) assert.equal(res.json().code, code, what);
};

describe('access matrix (from the OpenAPI document)', () => {
  it('has a rule for every route of the API', () => {
    const missing = routesOf().filter((r) => !(r in RULES));
    assert.deepEqual(missing, [], 'routes without a rule in the access matrix');
    assert.ok(routesOf().length >= 50);
  });

  it('every route × no key / revoked key / admin / analyst / client × own tenant / other tenant', async () => {
    let cases = 0;
    for (const route of routesOf()) {
      const rule = RULES[route];
      if (!rule) continue;
      const publicRoute = rule.roles === 'public';
      // No key, and a revoked key.
      for (const [label, key] of [['no key', undefined], ['revoked key', keys.revoked]] as const) {
        const res = await call(await rule.req('acme', key ?? ''), key);
        if (publicRoute) assert.equal(res.statusCode, rule.anonymous![label], `${route} ${label}: ${res.body}`);
        else expectStatus(res, 401, 'UNAUTHORIZED', `${route} ${label}`);
        cases++;
      }
      for (const role of ROLES) {
        const key = keys.acme[role];
        const allowed = publicRoute || (rule.roles !== 'operator' && rule.roles.includes(role));
        if (!allowed) {
          expectStatus(await call(await rule.req('acme', key), key), 403, 'FORBIDDEN', `${route} as ${role}`);
          cases++;
          continue;
        }
        const own = await call(await rule.req('acme', key), key);
        const what: string = `${route} as acme ${role} on acme`;
        if (rule.own !== undefined) assert.equal(own.statusCode, rule.own, `${what}: ${own.body}`);
        else {
          assert.ok(own.statusCode < 500 && own.statusCode !== 401 && own.statusCode !== 403, `${what}: ${own.statusCode} ${own.body}`);
          if (Array.isArray(rule.other)) assert.ok(!(own.statusCode === rule.other[0] && own.json().code === rule.other[1]), `${what} refused as another tenant's: ${own.body}`);
        }
        const other = await call(await rule.req('beta', key), key);
        if (typeof rule.other === 'function') rule.other(other);
        else expectStatus(other, rule.other[0], rule.other[1] as string, `${route} as acme ${role} on beta`);
        cases += 2;
      }
    }
    assert.ok(cases > 300, `ran ${cases} cases`);
  });

  it('the operator (env admin key) sees every tenant', async () => {
    for (const t of ['acme', 'beta'] as const) {
      assert.equal((await call({ method: 'GET', url: `/v1/pipelines/p-${t}` }, OPERATOR)).statusCode, 200);
      assert.equal((await call({ method: 'GET', url: `/v1/reservations/${fixtures[t].reservation}` }, OPERATOR)).statusCode, 200);
    }
    const list = (await call({ method: 'GET', url: '/v1/pipelines' }, OPERATOR)).json().items.map((p: { id: string }) => p.id);
    assert.ok(list.includes('p-acme') && list.includes('p-beta'));
    const budgets = (await call({ method: 'GET', url: '/v1/console/budgets' }, OPERATOR)).json() as { tenants: string[]; reservations: { id: string }[] };
    assert.ok(budgets.tenants.includes('acme') && budgets.tenants.includes('beta'), JSON.stringify(budgets.tenants));
    for (const t of ['acme', 'beta'] as const) assert.ok(budgets.reservations.some((r) => r.id === fixtures[t].reservation));
    // Sessions by their stored ids (each tenant's namespaced), the ids the operator's cost-tree route takes.
    const { sessions } = (await call({ method: 'GET', url: '/v1/console/sessions' }, OPERATOR)).json() as { sessions: string[] };
    assert.ok(sessions.includes('acme~sess-acme') && sessions.includes('beta~sess-beta'), JSON.stringify(sessions));
    assert.equal((await call({ method: 'GET', url: `/v1/sessions/${encodeURIComponent('beta~sess-beta')}/cost-tree` }, OPERATOR)).statusCode, 200);
  });
});
