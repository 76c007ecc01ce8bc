import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Running } from '../../src/server.js';
import { MAX_STORED_SESSION_ID, storedIdProblem } from '../../src/costs/schema.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('isolation');
const OPERATOR = 'isolation-operator-key-0123456789';
const U = 'USD_MICROCENTS';
let rt: Running;
const key = {} as Record<'acme' | 'beta', Record<'admin' | 'client' | 'analyst', string>>;

const call = async (k: string, method: string, url: string, payload?: unknown, query?: Record<string, string>) =>
  rt.app!.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${k}` }, ...(payload !== undefined ? { payload: payload as object } : {}), ...(query ? { query } : {}) });

before(async () => {
  rt = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  for (const t of ['acme', 'beta'] as const) {
    key[t] = {} as (typeof key)[typeof t];
    for (const role of ['admin', 'client', 'analyst'] as const) key[t][role] = (await call(OPERATOR, 'POST', '/v1/keys', { tenant: t, role, name: role })).json().key;
    assert.equal((await call(OPERATOR, 'PUT', '/v1/budgets', { scope: `tenant:${t}`, unit: U, allocated: 1_000_000_000 })).statusCode, 201);
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('reservation and decision ids cannot be derived across tenants', () => {
  it('ids are <tenant>~<122 random bits>: distinct, no shared structure, and a victim id is not reachable from the attacker’s', async () => {
    const mine: string[] = [];
    const theirs: string[] = [];
    for (let i = 0; i < 60; i++) {
      const a = await call(key.acme.client, 'POST', '/v1/reservations', { scope: 'tenant:acme', unit: U, amount: 1, idempotencyKey: `a${i}` });
      const b = await call(key.beta.client, 'POST', '/v1/reservations', { scope: 'tenant:beta', unit: U, amount: 1, idempotencyKey: `b${i}` });
      mine.push(a.json().id);
      theirs.push(b.json().id);
    }
    const random = (id: string) => id.slice(id.indexOf('~') + 1);
    for (const id of [...mine, ...theirs]) assert.match(random(id), /^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/, `v4 UUID bits in ${id}`);
    const all = [...mine, ...theirs].map(random);
    assert.equal(new Set(all).size, all.length);
    // No common structure: across 120 ids, no two share 8 leading hex digits (chance ≈ 1e-6 for random ids;
    // the former "process tag + counter" ids shared all but the last few).
    const prefixes = new Set(all.map((r) => r.slice(0, 8)));
    assert.equal(prefixes.size, all.length);
    // Whatever an attacker derives from its own ids — the same random part under the victim's tenant, or its
    // neighbours — names no reservation of the victim, and the victim's real ids answer 404 to the attacker.
    const known = new Set(theirs);
    fc.assert(
      fc.property(fc.constantFrom(...mine), fc.integer({ min: -3, max: 3 }), (id, delta) => {
        const r = random(id);
        const last = (parseInt(r.slice(-4), 16) + delta + 0x10000) % 0x10000;
        const guess = `beta~${r.slice(0, -4)}${last.toString(16).padStart(4, '0')}`;
        assert.ok(!known.has(guess));
      }),
      { numRuns: 200, seed: 14 },
    );
    for (const id of theirs.slice(0, 10)) {
      const r = await call(key.acme.client, 'GET', `/v1/reservations/${id}`);
      assert.equal(r.statusCode, 404);
      assert.equal(r.json().code, 'RESERVATION_NOT_FOUND');
      const c = await call(key.acme.client, 'POST', `/v1/reservations/${id}/release`);
      assert.equal(c.statusCode, 404);
    }
    assert.equal((await call(key.beta.client, 'GET', `/v1/reservations/${theirs[0]}`)).json().state, 'ACTIVE', 'untouched');
  });

  it('a reservation naming another tenant by subject is refused like one naming it by scope', async () => {
    const r = await call(key.acme.client, 'POST', '/v1/reservations', { subject: { tenant: 'beta' }, unit: U, amount: 1, idempotencyKey: 'subj' });
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().code, 'BUDGET_NOT_FOUND');
    const b = (await call(OPERATOR, 'GET', '/v1/balances', undefined, { scope: 'tenant:beta' })).json().balances[0];
    assert.equal(b.reserved, 60, 'only beta’s own 60 holds');
  });
});

describe('spans and cost trees', () => {
  const spans = (traceId: string, session: string, customer: string, model = 'gpt-4o') => ({
    spans: [
      { traceId, spanId: 'root', sessionId: session, customer, agent: 'coordinator', kind: 'agent', start: '2026-11-23T10:00:00Z', end: '2026-11-23T10:00:09Z' },
      { traceId, spanId: 'c1', parentSpanId: 'root', agent: 'researcher', model, provider: 'openai', usage: { input: 1200, output: 300 }, start: '2026-11-23T10:00:01Z', end: '2026-11-23T10:00:04Z' },
    ],
  });

  it('the tenant of a span is the key’s: another tenant’s trace id, session and customer in the body change nothing of theirs', async () => {
    assert.equal((await call(key.acme.client, 'POST', '/v1/spans', spans('t1', 's1', 'acme'))).statusCode, 200);
    const before = (await call(key.acme.analyst, 'GET', '/v1/sessions/s1/cost-tree')).json();
    // beta writes into "the same" trace and session, claiming acme as the customer.
    const w = await call(key.beta.client, 'POST', '/v1/spans', { spans: [{ ...spans('t1', 's1', 'acme').spans[1], spanId: 'evil', parentSpanId: 'root', usage: { input: 999_999, output: 999_999 } }] });
    assert.equal(w.statusCode, 200);
    const afterTree = (await call(key.acme.analyst, 'GET', '/v1/sessions/s1/cost-tree')).json();
    assert.deepEqual(afterTree, before, 'acme’s tree is unchanged');
    assert.equal((await call(key.beta.analyst, 'GET', '/v1/sessions/s1/cost-tree')).statusCode, 404, 'beta’s span joined no session of its own');

    const report = async (k: string) =>
      (await call(k, 'GET', '/v1/reports/costs', undefined, { groupBy: 'customer', from: '2026-11-01', to: '2026-11-30' })).json() as { rows: { key: string; calls: number }[]; total: { calls: number } };
    const acme = await report(key.acme.analyst);
    assert.deepEqual(acme.rows.map((r) => r.key), ['acme']);
    assert.equal(acme.rows[0]!.calls, 1, 'beta’s call was not billed to acme');
    assert.equal(acme.total.calls, 1);
    const beta = await report(key.beta.analyst);
    assert.deepEqual(beta.rows.map((r) => r.key), ['beta'], 'billed to the key’s tenant');
    const all = await report(OPERATOR);
    assert.deepEqual(all.rows.map((r) => r.key).sort(), ['acme', 'beta']);
    // A tenant's total is its own row's, every nested figure included; a tenant without spans sees zeros only.
    const full = (await call(key.acme.analyst, 'GET', '/v1/reports/costs', undefined, { groupBy: 'customer', from: '2026-11-01', to: '2026-11-30' })).json() as { rows: ({ key: string } & Record<string, unknown>)[]; total: Record<string, unknown> };
    const { key: _k, ...acmeRow } = full.rows[0]!;
    assert.deepEqual(full.total, acmeRow);
    assert.equal((full.total.tokens as { input: number }).input, 1200, 'beta’s 999,999 input tokens are not in acme’s total');
    const gamma = (await call(OPERATOR, 'POST', '/v1/keys', { tenant: 'gamma', role: 'analyst', name: 'analyst' })).json().key as string;
    const empty = (await call(gamma, 'GET', '/v1/reports/costs', undefined, { groupBy: 'customer', from: '2026-11-01', to: '2026-11-30' })).json() as { rows: unknown[]; total: unknown };
    assert.deepEqual(empty.rows, []);
    const numbers = (v: unknown): number[] => (typeof v === 'number' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(numbers) : []);
    assert.ok(numbers(empty.total).length > 5 && numbers(empty.total).every((x) => x === 0), `a tenant without spans sees only zeros: ${JSON.stringify(empty.total)}`);
    const csv = (await call(gamma, 'GET', '/v1/reports/costs', undefined, { groupBy: 'customer', from: '2026-11-01', to: '2026-11-30', format: 'csv' })).body;
    const totalLine = csv.trim().split('\n').at(-1)!.split(',');
    assert.equal(totalLine[0], 'TOTAL');
    assert.ok(totalLine.slice(1).every((x) => Number(x) === 0), `CSV total: ${totalLine.join(',')}`);
    const byModel = await call(key.acme.analyst, 'GET', '/v1/reports/costs', undefined, { groupBy: 'model' });
    assert.equal(byModel.statusCode, 403, 'groupings across tenants are for operators');
  });
});

describe('long session and trace ids', () => {
  // Generated tenants (short and long names), session ids and trace ids of lengths around what the cost-tree route
  // takes once the tenant prefix is counted, with characters that percent-encode to several bytes.
  const chars = fc.constantFrom('a', 'Z', '0', '-', '_', '<', '/', '%', '?', '#', ' ', '~', 'Ω', '🙂');
  /** `head` then the generated characters in turn, to exactly `len` UTF-16 code units (a 🙂 that would overshoot by one gives way to 'L'). */
  const fill = (head: string, pool: readonly string[], len: number) => {
    let out = head;
    for (let j = 0; out.length < len; j++) {
      const c = pool[j % pool.length]!;
      out += out.length + c.length <= len ? c : 'L';
    }
    return out;
  };
  const tenants = new Map<string, { client: string; analyst: string }>();
  const keysOf = async (tenant: string) => {
    let k = tenants.get(tenant);
    if (!k) {
      const mk = async (role: string) => (await call(OPERATOR, 'POST', '/v1/keys', { tenant, role, name: role })).json().key as string;
      k = { client: await mk('client'), analyst: await mk('analyst') };
      tenants.set(tenant, k);
    }
    return k;
  };
  const listed = async (k: string) => ((await call(k, 'GET', '/v1/console/sessions', undefined, { limit: '1000' })).json() as { sessions: string[] }).sessions;
  const tree = (k: string, id: string) => call(k, 'GET', `/v1/sessions/${encodeURIComponent(id)}/cost-tree`);

  it('every span a key may send opens in its cost tree for that key and for the operator: the longest tenant names, session and trace ids (generated)', async () => {
    let n = 0;
    const seen = { named: 0, bare: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.constantFrom('t', 'long-tenant-name-for-ids', 'x'.repeat(93), 'z'.repeat(128)), { nil: null }),
        fc.integer({ min: 240, max: 256 }),
        fc.array(chars, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 100, max: 128 }),
        fc.boolean(),
        async (tenant, sessionLength, pool, traceLength, named) => {
          const ns = tenant === null ? '' : `${tenant}~`;
          const i = n++;
          // Session ids up to the schema's 256 code units (a 🙂 counts two), trace ids up to its 128.
          const sessionId = fill(`s${i}-`, pool, sessionLength);
          const traceId = fill(`t${i}-`, ['T', '.', ':', '_'], traceLength);
          const sender = tenant === null ? OPERATOR : (await keysOf(tenant)).client;
          const reader = tenant === null ? OPERATOR : (await keysOf(tenant)).analyst;
          const now = Date.now();
          const span = { traceId, spanId: 'a', agent: 'planner', model: 'gpt-4o', usage: { input: 10, output: 1 }, start: now - 10, end: now, ...(named ? { sessionId } : {}) };
          const res = await call(sender, 'POST', '/v1/spans', { spans: [span] });
          assert.equal(res.statusCode, 200, res.body);
          assert.equal((res.json() as { accepted: number }).accepted, 1, res.body);
          const session = named ? sessionId : `trace-${traceId}`;
          seen[named ? 'named' : 'bare']++;
          assert.ok((await listed(reader)).includes(session), `listed for its key: ${session}`);
          assert.equal((await tree(reader, session)).statusCode, 200, `opens for its key: ${session}`);
          assert.ok((await listed(OPERATOR)).includes(ns + session), `listed for the operator: ${ns + session}`);
          assert.equal((await tree(OPERATOR, ns + session)).statusCode, 200, `opens for the operator: ${ns + session}`);
        },
      ),
      { numRuns: 40, seed: 20 },
    );
    assert.ok(seen.named > 5 && seen.bare > 5, JSON.stringify(seen));
  });

  it('a span whose stored session id would be longer than the route takes is refused, naming the field (the check behind the limits)', () => {
    // No tenant name or id the schemas accept reaches it (MAX_PARAM_LENGTH leaves room for the longest); a longer
    // tenant prefix stands in for a limit changed on one side only.
    const tenant = 'q'.repeat(MAX_STORED_SESSION_ID);
    assert.equal(storedIdProblem({ traceId: 't', sessionId: 's' }, 'z'.repeat(128)), undefined);
    assert.equal(storedIdProblem({ traceId: 't', sessionId: 's' }, tenant)?.field, 'sessionId');
    assert.equal(storedIdProblem({ traceId: 't' }, tenant)?.field, 'traceId');
    assert.equal(storedIdProblem({ traceId: 't'.repeat(128), sessionId: 's'.repeat(256) }, 'z'.repeat(128)), undefined);
  });
});

describe('pipeline envelopes', () => {
  it('spans join the envelopes of the pipeline their decision was made on only when it is their tenant’s', async () => {
    const now = new Date().toISOString();
    const envelopes = async (k: string, id: string) => (await call(k, 'GET', `/v1/pipelines/${id}/envelopes`)).json() as { sessions: number; roles: { agent: string }[] };
    const decide = async (k: string, pipeline: string) => (await call(k, 'POST', '/v1/allocations', { pipeline, unitKey: 'u' })).json().decisionId as string;
    const usage = (trace: string, decisionId: string, agent: string) => ({
      spans: [{ traceId: trace, spanId: 'a', sessionId: trace, decisionId, agent, model: 'gpt-4o', provider: 'openai', usage: { input: 9_000_000, output: 9_000_000 }, start: now, end: now }],
    });
    for (const t of ['acme', 'beta'] as const) assert.equal((await call(key[t].admin, 'PUT', `/v1/pipelines/env-${t}`, FIVE_AGENTS)).statusCode, 200);
    const betaDecision = await decide(key.beta.client, 'env-beta');
    const acmeDecision = await decide(key.acme.client, 'env-acme');
    // acme names beta's decision: stored as acme's spans, but not indexed into beta's pipeline.
    assert.equal((await call(key.acme.client, 'POST', '/v1/spans', usage('poison', betaDecision, 'injected-by-acme'))).statusCode, 200);
    // Its own decision: indexed (the same path, so the refusal above is the tenant rule and not a failure).
    assert.equal((await call(key.acme.client, 'POST', '/v1/spans', usage('own', acmeDecision, 'reasoner'))).statusCode, 200);
    const acme = await envelopes(key.acme.analyst, 'env-acme');
    assert.equal(acme.sessions, 1);
    const beta = await envelopes(key.beta.analyst, 'env-beta');
    assert.equal(beta.sessions, 0, `beta's envelopes: ${JSON.stringify(beta)}`);
    assert.ok(!beta.roles.some((r) => r.agent === 'injected-by-acme'));
    // The operator's traces are indexed as given.
    assert.equal((await call(OPERATOR, 'POST', '/v1/spans', usage('op', betaDecision, 'reasoner'))).statusCode, 200);
    assert.equal((await envelopes(key.beta.analyst, 'env-beta')).sessions, 1);
  });
});

describe('control-plane documents', () => {
  it('a pipeline belongs to the tenant that created it; ids are global, so a taken id is 409 and never a takeover', async () => {
    assert.equal((await call(key.acme.admin, 'PUT', '/v1/pipelines/shared-name', FIVE_AGENTS)).statusCode, 200);
    const take = await call(key.beta.admin, 'PUT', '/v1/pipelines/shared-name', FIVE_AGENTS);
    assert.equal(take.statusCode, 409);
    assert.equal(take.json().code, 'ID_TAKEN');
    // The operator replaces it without changing its owner.
    assert.equal((await call(OPERATOR, 'PUT', '/v1/pipelines/shared-name', { ...FIVE_AGENTS, defaultTotalTokens: 20000 })).statusCode, 200);
    assert.equal((await call(key.acme.analyst, 'GET', '/v1/pipelines/shared-name')).json().defaultTotalTokens, 20000);
    // A strategy id of acme cannot be claimed by beta for its own pipeline either.
    assert.equal((await call(key.acme.admin, 'PUT', '/v1/strategies/shared-s', { pipeline: 'shared-name', kind: 'uniform' })).statusCode, 200);
    assert.equal((await call(key.beta.admin, 'PUT', '/v1/pipelines/beta-p', FIVE_AGENTS)).statusCode, 200);
    const s = await call(key.beta.admin, 'PUT', '/v1/strategies/shared-s', { pipeline: 'beta-p', kind: 'uniform' });
    assert.equal(s.json().code, 'ID_TAKEN');
    // Naming another tenant's strategy as a default, or allocating with it, answers as if it did not exist.
    const d = await call(key.beta.admin, 'PUT', '/v1/pipelines/beta-p', { ...FIVE_AGENTS, defaultStrategy: 'shared-s' });
    assert.equal(d.json().code, 'STRATEGY_NOT_FOUND');
    const a = await call(key.beta.client, 'POST', '/v1/allocations', { pipeline: 'beta-p', strategy: 'shared-s' });
    assert.equal(a.json().code, 'STRATEGY_NOT_FOUND');
  });

  it('the operator creates a pipeline for a tenant with x-apportion-tenant', async () => {
    const r = await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/for-beta', headers: { authorization: `Bearer ${OPERATOR}`, 'x-apportion-tenant': 'beta' }, payload: FIVE_AGENTS });
    assert.equal(r.statusCode, 200);
    assert.equal((await call(key.beta.analyst, 'GET', '/v1/pipelines/for-beta')).statusCode, 200);
    assert.equal((await call(key.acme.analyst, 'GET', '/v1/pipelines/for-beta')).statusCode, 404);
    const bad = await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/x', headers: { authorization: `Bearer ${OPERATOR}`, 'x-apportion-tenant': 'no spaces allowed' }, payload: FIVE_AGENTS });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /x-apportion-tenant/);
  });
});
