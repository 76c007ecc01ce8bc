import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('reservations');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

async function put(scope: string, allocated: number, extra: Record<string, unknown> = {}): Promise<void> {
  const r = await call('PUT', '/v1/budgets', { scope, unit: 'TOKENS', allocated, ...extra });
  assert.ok(r.statusCode === 200 || r.statusCode === 201, r.body);
}

async function balance(scope: string): Promise<{ allocated: number; remaining: number; reserved: number; spent: number; debt: number }> {
  const r = await call('GET', `/v1/balances?scope=${encodeURIComponent(scope)}&unit=TOKENS`);
  assert.equal(r.statusCode, 200, r.body);
  const b = r.json().balances.find((x: { scope: string }) => x.scope === scope);
  assert.ok(b, `no balance for ${scope}`);
  return b;
}

let n = 0;
const key = () => `k-${n++}`;

before(async () => {
  // The background sweeper is slowed down so the test can drive expiry itself.
  rt = await startTest(prefix, {}, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('reservations over HTTP', () => {
  it('reserves at every budgeted level, commits, and returns the unused part', async () => {
    await put('tenant:t1', 1000);
    await put('tenant:t1/workspace:w', 600);
    await put('tenant:t1/workspace:w/workflow:f/agent:a', 300);
    const r = await call('POST', '/v1/reservations', { subject: { tenant: 't1', workspace: 'w', workflow: 'f', agent: 'a' }, unit: 'TOKENS', amount: 200, idempotencyKey: key() });
    assert.equal(r.statusCode, 201, r.body);
    const g = r.json();
    assert.equal(g.state, 'ACTIVE');
    assert.equal(g.scope, 'tenant:t1/workspace:w/workflow:f/agent:a');
    assert.deepEqual(g.scopes, ['tenant:t1', 'tenant:t1/workspace:w', 'tenant:t1/workspace:w/workflow:f/agent:a'], 'the unbudgeted workflow level is skipped');
    assert.deepEqual(await balance('tenant:t1/workspace:w'), { ...(await balance('tenant:t1/workspace:w')), remaining: 400, reserved: 200, spent: 0 });
    const c = await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 150 });
    assert.equal(c.statusCode, 200, c.body);
    assert.deepEqual(c.json(), { id: g.id, state: 'COMMITTED', reserved: 200, charged: 150, released: 50, debt: 0, overrun: 0 });
    for (const [s, alloc] of [['tenant:t1', 1000], ['tenant:t1/workspace:w', 600], ['tenant:t1/workspace:w/workflow:f/agent:a', 300]] as const) {
      const b = await balance(s);
      assert.equal(b.allocated, alloc);
      assert.equal(b.spent, 150);
      assert.equal(b.reserved, 0);
      assert.equal(b.remaining, alloc - 150);
    }
    const view = await call('GET', `/v1/reservations/${g.id}`);
    assert.equal(view.json().state, 'COMMITTED');
    assert.equal(view.json().charged, 150);
  });

  it('denies with 409 naming the scope, and the parent caps children that sum to more', async () => {
    // The worked example's shape: children sum to 60 > 50.
    await put('tenant:t2/workspace:ws', 50);
    await put('tenant:t2/workspace:ws/agent:planner', 20);
    await put('tenant:t2/workspace:ws/agent:executor', 30);
    await put('tenant:t2/workspace:ws/agent:reviewer', 10);
    const res = async (agent: string, amount: number) =>
      call('POST', '/v1/reservations', { scope: `tenant:t2/workspace:ws/agent:${agent}`, unit: 'TOKENS', amount, idempotencyKey: key() });
    assert.equal((await res('planner', 20)).statusCode, 201);
    assert.equal((await res('executor', 25)).statusCode, 201);
    const denied = await res('reviewer', 10);
    assert.equal(denied.statusCode, 409);
    assert.equal(denied.json().code, 'BUDGET_EXCEEDED');
    assert.equal(denied.json().details.scope, 'tenant:t2/workspace:ws', 'the workspace cap denies although the reviewer has 10 left');
    assert.equal(denied.json().details.remaining, 5);
    const own = await res('planner', 1);
    assert.equal(own.json().details.scope, 'tenant:t2/workspace:ws/agent:planner');
    assert.equal((await balance('tenant:t2/workspace:ws/agent:reviewer')).reserved, 0, 'a denial holds nothing anywhere');
  });

  it('answers a replay with the original answer and charges once; another payload with the same key is 409', async () => {
    await put('tenant:t3', 100);
    const body = { scope: 'tenant:t3/agent:x', unit: 'TOKENS', amount: 30, idempotencyKey: 'same' };
    const [a, b] = await Promise.all([call('POST', '/v1/reservations', body), call('POST', '/v1/reservations', body)]);
    assert.equal(a.statusCode, 201);
    assert.equal(b.statusCode, 201);
    assert.equal(a.json().id, b.json().id);
    assert.equal((await balance('tenant:t3')).reserved, 30, 'held once');
    const other = await call('POST', '/v1/reservations', { ...body, amount: 31 });
    assert.equal(other.statusCode, 409);
    assert.equal(other.json().code, 'IDEMPOTENCY_KEY_REUSED');
    const id = a.json().id;
    const c1 = await call('POST', `/v1/reservations/${id}/commit`, { amount: 25 });
    const c2 = await call('POST', `/v1/reservations/${id}/commit`, { amount: 25 });
    assert.equal(c2.statusCode, 200);
    assert.equal(c2.json().replayed, true);
    assert.equal(c1.json().charged, c2.json().charged);
    assert.equal((await balance('tenant:t3')).spent, 25, 'the lost response replayed: charged once');
    const c3 = await call('POST', `/v1/reservations/${id}/commit`, { amount: 26 });
    assert.equal(c3.statusCode, 409);
    assert.equal(c3.json().code, 'RESERVATION_FINALIZED');
    const rel = await call('POST', `/v1/reservations/${id}/release`, {});
    assert.equal(rel.json().code, 'RESERVATION_FINALIZED');
    // A denial is replayed as a denial, even after the budget grows.
    const big = { scope: 'tenant:t3', unit: 'TOKENS', amount: 1000, idempotencyKey: 'too-big' };
    assert.equal((await call('POST', '/v1/reservations', big)).statusCode, 409);
    await put('tenant:t3', 5000);
    const again = await call('POST', '/v1/reservations', big);
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().details.replayed, true);
  });

  it('lets exactly one of a racing commit and release win', async () => {
    await put('tenant:t4', 1_000_000);
    for (let i = 0; i < 40; i++) {
      const res = await call('POST', '/v1/reservations', { scope: 'tenant:t4', unit: 'TOKENS', amount: 10, idempotencyKey: key() });
      assert.equal(res.statusCode, 201, res.body);
      const g = res.json();
      const [c, r] = await Promise.all([call('POST', `/v1/reservations/${g.id}/commit`, { amount: 7 }), call('POST', `/v1/reservations/${g.id}/release`, {})]);
      const wins = [c.statusCode, r.statusCode].filter((s) => s === 200).length;
      assert.equal(wins, 1, `${c.body} / ${r.body}`);
      const loser = c.statusCode === 200 ? r : c;
      assert.equal(loser.statusCode, 409);
      assert.equal(loser.json().code, 'RESERVATION_FINALIZED');
    }
    const b = await balance('tenant:t4');
    assert.equal(b.reserved, 0);
    assert.equal(b.allocated, b.remaining + b.reserved + b.spent);
    assert.equal(b.spent % 7, 0);
  });

  it('charges every overage; the policy decides what is an overrun (marked, alerted), never whether spend is recorded', async () => {
    await put('tenant:t5/workspace:rej', 100);
    await put('tenant:t5/workspace:avail', 100, { overagePolicy: 'ALLOW_IF_AVAILABLE' });
    await put('tenant:t5/workspace:od', 100, { overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 20 });
    const reserve = async (ws: string, amount: number) =>
      (await call('POST', '/v1/reservations', { scope: `tenant:t5/workspace:${ws}`, unit: 'TOKENS', amount, idempotencyKey: key() })).json().id as string;
    const commit = async (id: string, amount: number) => {
      const r = await call('POST', `/v1/reservations/${id}/commit`, { amount });
      assert.equal(r.statusCode, 200, r.body);
      return r.json();
    };

    // REJECT: the whole overage is an overrun. It is paid from remaining while there is some, then becomes debt.
    const r1 = await reserve('rej', 50);
    assert.deepEqual(await commit(r1, 51), { id: r1, state: 'COMMITTED', reserved: 50, charged: 51, released: 0, debt: 0, overrun: 1 });
    assert.equal((await call('GET', `/v1/reservations/${r1}`)).json().charged, 51);
    const r1b = await reserve('rej', 49);
    assert.deepEqual(await commit(r1b, 60), { id: r1b, state: 'COMMITTED', reserved: 49, charged: 60, released: 0, debt: 11, overrun: 11 });
    let b = await balance('tenant:t5/workspace:rej');
    assert.deepEqual([b.remaining, b.reserved, b.spent, b.debt, (b as { overrun?: number }).overrun], [0, 0, 100, 11, 12]);
    const refused = await call('POST', '/v1/reservations', { scope: 'tenant:t5/workspace:rej', unit: 'TOKENS', amount: 1, idempotencyKey: key() });
    assert.equal(refused.json().code, 'BUDGET_EXCEEDED', 'an overrun into debt refuses further reservations');
    // A later commit smaller than its hold repays debt with what it leaves (the fund comes first here).
    assert.equal((await call('POST', '/v1/budgets/fund', { scope: 'tenant:t5/workspace:rej', unit: 'TOKENS', amount: 20, idempotencyKey: key() })).statusCode, 200);
    b = await balance('tenant:t5/workspace:rej');
    assert.deepEqual([b.allocated, b.remaining, b.spent, b.debt], [120, 9, 111, 0]);

    // ALLOW_IF_AVAILABLE: an overage the remaining covers is allowed; beyond it, the rest is debt and an overrun.
    const r2 = await reserve('avail', 50);
    assert.equal((await commit(r2, 90)).overrun, 0);
    const r3 = await reserve('avail', 5);
    assert.deepEqual(await commit(r3, 20), { id: r3, state: 'COMMITTED', reserved: 5, charged: 20, released: 0, debt: 10, overrun: 10 });
    b = await balance('tenant:t5/workspace:avail');
    assert.deepEqual([b.remaining, b.spent, b.debt], [0, 100, 10]);

    // ALLOW_WITH_OVERDRAFT: debt within the limit is allowed; past it, an overrun.
    const r4 = await reserve('od', 90);
    const c4 = await commit(r4, 105);
    assert.deepEqual([c4.debt, c4.overrun], [5, 0]);
    b = await balance('tenant:t5/workspace:od');
    assert.deepEqual([b.remaining, b.reserved, b.spent, b.debt], [0, 0, 100, 5]);
    assert.equal((await call('POST', '/v1/reservations', { scope: 'tenant:t5/workspace:od', unit: 'TOKENS', amount: 1, idempotencyKey: key() })).statusCode, 409, 'in debt: nothing left to reserve');
    const debit = await call('POST', '/v1/budgets/debit', { scope: 'tenant:t5/workspace:od', unit: 'TOKENS', amount: 16, idempotencyKey: key() });
    assert.equal(debit.json().code, 'OVERDRAFT_LIMIT_EXCEEDED');
    // The message says what the scope could still take: the remaining plus the overdraft not yet used.
    assert.match(debit.json().message, /^body\/amount: 16 exceeds the remaining 0 plus the 15 of overdraft left \(limit 20, debt 5\) at scope "tenant:t5\/workspace:od"$/);
    assert.deepEqual([debit.json().details.overdraftLimit, debit.json().details.debt], [20, 5]);
    assert.equal((await call('POST', '/v1/budgets/fund', { scope: 'tenant:t5/workspace:od', unit: 'TOKENS', amount: 50, idempotencyKey: key() })).statusCode, 200);
    b = await balance('tenant:t5/workspace:od');
    assert.deepEqual([b.allocated, b.remaining, b.spent, b.debt], [150, 45, 105, 0], 'funding repays the debt first');
    const r5 = await reserve('od', 45);
    const c5 = await commit(r5, 80);
    assert.deepEqual([c5.debt, c5.overrun], [35, 15], '20 of the 35 of debt are within the overdraft limit');
  });

  it('the README planner example: an ALLOW_IF_AVAILABLE agent under a REJECT $50 workspace may overrun its reservation', async () => {
    // The most specific held scope's policy decides whether an overage is allowed; every level pays it from its
    // remaining; a level that cannot is charged the rest as debt, an overrun there.
    await put('tenant:acme/workspace:alpha', 5_000_000_000);
    await put('tenant:acme/workspace:alpha/agent:planner', 2_000_000_000, { overagePolicy: 'ALLOW_IF_AVAILABLE' });
    const reserve = async (amount: number) => {
      const r = await call('POST', '/v1/reservations', { scope: 'tenant:acme/workspace:alpha/agent:planner', unit: 'TOKENS', amount, idempotencyKey: key() });
      assert.equal(r.statusCode, 201, r.body);
      return r.json().id as string;
    };
    const id = await reserve(300_000_000);
    const c = await call('POST', `/v1/reservations/${id}/commit`, { amount: 350_000_000 });
    assert.equal(c.statusCode, 200, c.body);
    assert.deepEqual([c.json().charged, c.json().overrun, c.json().debt], [350_000_000, 0, 0]);
    for (const s of ['tenant:acme/workspace:alpha', 'tenant:acme/workspace:alpha/agent:planner']) assert.equal((await balance(s)).spent, 350_000_000, s);
    // The workspace is the hard cap: once it runs short, the rest of an overage is debt and an overrun there.
    const other = await call('POST', '/v1/reservations', { scope: 'tenant:acme/workspace:alpha/agent:executor', unit: 'TOKENS', amount: 4_600_000_000, idempotencyKey: key() });
    assert.equal(other.statusCode, 201, other.body);
    const id2 = await reserve(50_000_000);
    const c2 = await call('POST', `/v1/reservations/${id2}/commit`, { amount: 150_000_000 });
    assert.deepEqual([c2.json().charged, c2.json().overrun, c2.json().debt], [150_000_000, 100_000_000, 100_000_000]);
    const ws = await balance('tenant:acme/workspace:alpha');
    assert.deepEqual([ws.remaining, ws.spent, ws.debt, (ws as { overrun?: number }).overrun], [0, 400_000_000, 100_000_000, 100_000_000]);
    const planner = await balance('tenant:acme/workspace:alpha/agent:planner');
    assert.deepEqual([planner.spent, planner.debt], [500_000_000, 0], 'the planner itself had room: no overrun there');
  });

  it('repays debt from what a commit leaves of its hold', async () => {
    await put('tenant:t5b', 100, { overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 50 });
    const reserve = async (amount: number) => (await call('POST', '/v1/reservations', { scope: 'tenant:t5b', unit: 'TOKENS', amount, idempotencyKey: key() })).json().id as string;
    const a = await reserve(60);
    const b0 = await reserve(40);
    assert.equal((await call('POST', `/v1/reservations/${a}/commit`, { amount: 90 })).json().debt, 30);
    let b = await balance('tenant:t5b');
    assert.deepEqual([b.remaining, b.reserved, b.spent, b.debt], [0, 40, 60, 30]);
    // 40 held, 5 used: the 35 left repay the 30 of debt first; only 5 go back to remaining.
    assert.equal((await call('POST', `/v1/reservations/${b0}/commit`, { amount: 5 })).statusCode, 200);
    b = await balance('tenant:t5b');
    assert.deepEqual([b.remaining, b.reserved, b.spent, b.debt], [5, 0, 95, 0]);
    assert.equal(b.allocated, b.remaining + b.reserved + b.spent);
  });

  it('expires reservations lazily and through the sweeper, returning their amounts', async () => {
    await put('tenant:t6', 100);
    const g = (await call('POST', '/v1/reservations', { scope: 'tenant:t6', unit: 'TOKENS', amount: 40, ttlMs: 1, idempotencyKey: key() })).json();
    await new Promise((r) => setTimeout(r, 5));
    // The use reported after expiry is still charged, once: the hold went back, the spend is new.
    const c = await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 10 });
    assert.equal(c.statusCode, 200, c.body);
    assert.deepEqual(c.json(), { id: g.id, state: 'COMMITTED', reserved: 40, charged: 10, released: 0, debt: 0, overrun: 10, late: true });
    assert.equal((await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 10 })).json().replayed, true);
    const bare = await call('POST', `/v1/reservations/${g.id}/release`);
    assert.equal(bare.json().code, 'RESERVATION_FINALIZED', 'a bare POST (no body) is accepted by release');
    assert.equal(bare.json().details.state, 'COMMITTED');
    assert.deepEqual([(await balance('tenant:t6')).remaining, (await balance('tenant:t6')).spent], [90, 10]);
    const g2 = (await call('POST', '/v1/reservations', { scope: 'tenant:t6', unit: 'TOKENS', amount: 40, ttlMs: 1, idempotencyKey: key() })).json();
    await new Promise((r) => setTimeout(r, 5));
    const mod = rt.modules.find((m) => m.name === 'budgets') as unknown as { reservations: { expireDue(t: string): Promise<number> } };
    assert.equal(await mod.reservations.expireDue('t6'), 1);
    assert.equal((await call('GET', `/v1/reservations/${g2.id}`)).json().state, 'EXPIRED');
    assert.equal((await balance('tenant:t6')).reserved, 0);
    assert.equal((await call('POST', `/v1/reservations/${g2.id}/extend`, {})).json().code, 'RESERVATION_EXPIRED');
  });

  it('extends a bounded number of times, freezes, dry-runs and validates scopes', async () => {
    await put('tenant:t7', 100);
    const g = (await call('POST', '/v1/reservations', { scope: 'tenant:t7', unit: 'TOKENS', amount: 10, idempotencyKey: key() })).json();
    // Extending never shortens: a 1 s extension of a 60 s reservation keeps its deadline and does not count.
    const short = (await call('POST', `/v1/reservations/${g.id}/extend`, { ttlMs: 1000 })).json();
    assert.deepEqual([short.expiresAt, short.extensions], [g.expiresAt, 0]);
    for (let i = 1; i <= 10; i++) assert.equal((await call('POST', `/v1/reservations/${g.id}/extend`, { ttlMs: 60_000 + i * 1000 })).json().extensions, i);
    assert.equal((await call('POST', `/v1/reservations/${g.id}/extend`, {})).json().code, 'EXTEND_LIMIT_REACHED');

    const dry = await call('POST', '/v1/reservations', { scope: 'tenant:t7', unit: 'TOKENS', amount: 90, idempotencyKey: key(), dryRun: true });
    assert.equal(dry.statusCode, 200, dry.body);
    assert.equal(dry.json().allowed, true);
    assert.equal((await balance('tenant:t7')).reserved, 10, 'a dry run holds nothing');
    const dryNo = await call('POST', '/v1/reservations', { scope: 'tenant:t7', unit: 'TOKENS', amount: 91, idempotencyKey: key(), dryRun: true });
    assert.equal(dryNo.statusCode, 409);

    assert.equal((await call('POST', '/v1/budgets/freeze', { scope: 'tenant:t7', unit: 'TOKENS', idempotencyKey: key() })).statusCode, 200);
    const frozen = await call('POST', '/v1/reservations', { scope: 'tenant:t7', unit: 'TOKENS', amount: 1, idempotencyKey: key() });
    assert.equal(frozen.json().code, 'BUDGET_FROZEN');
    assert.equal((await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 10 })).statusCode, 200, 'work already reserved may still be committed');
    await call('POST', '/v1/budgets/unfreeze', { scope: 'tenant:t7', unit: 'TOKENS', idempotencyKey: key() });

    for (const scope of ['workspace:w', 'tenant:a/agent:x/workspace:y', 'tenant:a b', 'tenant:x/team:y']) {
      const r = await call('POST', '/v1/reservations', { scope, unit: 'TOKENS', amount: 1, idempotencyKey: key() });
      assert.equal(r.statusCode, 400, scope);
      assert.equal(r.json().code, 'INVALID_SCOPE');
      assert.match(r.json().message, /^body\/scope/);
    }
    const none = await call('POST', '/v1/reservations', { scope: 'tenant:nobody', unit: 'TOKENS', amount: 1, idempotencyKey: key() });
    assert.equal(none.statusCode, 404);
    assert.equal(none.json().code, 'BUDGET_NOT_FOUND');
    assert.equal((await call('PUT', '/v1/budgets', { scope: 'tenant:t7', unit: 'TOKENS', allocated: 5 })).json().code, 'ALLOCATION_BELOW_USAGE');
  });

  it('refuses to extend a reservation or a draw held at a frozen scope (its own, or any ancestor), changing nothing', async () => {
    const levels = ['tenant:t-fz', 'tenant:t-fz/workspace:w', 'tenant:t-fz/workspace:w/agent:a'];
    for (const [j, s] of levels.entries()) await put(s, 1000 * (3 - j));
    const freeze = async (op: 'freeze' | 'unfreeze', scope: string) =>
      assert.equal((await call('POST', `/v1/budgets/${op}`, { scope, unit: 'TOKENS', idempotencyKey: key() })).statusCode, 200);
    // Every level frozen in turn, for a reservation and for a draw from it (held at its parent's scopes).
    for (const frozen of levels) {
      for (const asDraw of [false, true]) {
        const g = (await call('POST', '/v1/reservations', { scope: levels[2], unit: 'TOKENS', amount: 50, idempotencyKey: key() })).json();
        const target = asDraw ? (await call('POST', `/v1/reservations/${g.id}/draws`, { amount: 20, idempotencyKey: key() })).json() : g;
        assert.ok(target.id, JSON.stringify(target));
        await freeze('freeze', frozen);
        const e = await call('POST', `/v1/reservations/${target.id}/extend`, { ttlMs: 600_000 });
        assert.equal(e.statusCode, 409, `${frozen} ${asDraw}: ${e.body}`);
        assert.equal(e.json().code, 'BUDGET_FROZEN');
        assert.equal(e.json().details.scope, frozen);
        assert.match(e.json().message, /^params\/id: /);
        const view = (await call('GET', `/v1/reservations/${target.id}`)).json();
        assert.deepEqual([view.state, view.expiresAt, view.extensions], ['ACTIVE', target.expiresAt, 0], 'the deadline did not move');
        // Work in flight still settles at a frozen scope.
        if (asDraw) assert.equal((await call('POST', `/v1/reservations/${target.id}/commit`, { amount: 5 })).statusCode, 200);
        assert.equal((await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 10 })).statusCode, 200);
        await freeze('unfreeze', frozen);
      }
    }
    // Unfrozen, an extension moves the deadline again.
    const g = (await call('POST', '/v1/reservations', { scope: levels[2], unit: 'TOKENS', amount: 1, idempotencyKey: key() })).json();
    const e = await call('POST', `/v1/reservations/${g.id}/extend`, { ttlMs: 600_000 });
    assert.equal(e.statusCode, 200, e.body);
    assert.equal(e.json().extensions, 1);
    for (const s of levels) assert.equal((await balance(s)).spent, levels.length * (2 * 10 + 5), s);
  });

  it('a PUT cannot leave debt above the new settings\' overdraft limit (debt ≤ overdraftLimit + overrun holds after it)', async () => {
    const scope = 'tenant:t-debt';
    const settings = (allocated: number, extra: object = {}) => call('PUT', '/v1/budgets', { scope, unit: 'TOKENS', allocated, ...extra });
    assert.equal((await settings(500, { overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 300 })).statusCode, 201);
    assert.equal((await call('POST', '/v1/budgets/debit', { scope, unit: 'TOKENS', amount: 700, idempotencyKey: key() })).statusCode, 200);
    const balance = async () => (await call('GET', `/v1/balances?scope=${scope}&unit=TOKENS`)).json().balances[0] as { allocated: number; spent: number; debt: number; overdraftLimit: number; overagePolicy: string };
    assert.equal((await balance()).debt, 200);
    for (const extra of [{}, { overagePolicy: 'ALLOW_IF_AVAILABLE' }, { overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 199 }]) {
      const r = await settings(500, extra);
      assert.equal(r.statusCode, 409, JSON.stringify(extra));
      assert.equal(r.json().code, 'OVERDRAFT_BELOW_DEBT');
      assert.match(r.json().message, /^body\/overdraftLimit: .* owes 200/);
    }
    assert.deepEqual(await balance(), { ...(await balance()), allocated: 500, debt: 200, overdraftLimit: 300, overagePolicy: 'ALLOW_WITH_OVERDRAFT' }, 'nothing written');
    // A limit that covers the debt, or an allocation that repays it (debt first), is accepted.
    assert.equal((await settings(500, { overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 200 })).statusCode, 200);
    assert.equal((await settings(650)).statusCode, 409, '150 repaid, 50 left without an overdraft');
    assert.equal((await settings(700)).statusCode, 200);
    const b = await balance();
    assert.equal(b.debt, 0);
    assert.equal(b.spent, 700, 'the debt was repaid from the new allocation: what was charged stays charged');
  });

  it('lists a scope with its children and resets', async () => {
    await put('tenant:t8', 100);
    await put('tenant:t8/workspace:a', 10);
    await put('tenant:t8/workspace:ab', 10);
    const list = (await call('GET', '/v1/balances?scope=tenant:t8/workspace:a')).json().balances.map((b: { scope: string }) => b.scope);
    assert.deepEqual(list, ['tenant:t8/workspace:a'], 'workspace:ab is not a child of workspace:a');
    assert.equal((await call('GET', '/v1/balances?scope=tenant:t8')).json().balances.length, 3);
    await call('POST', '/v1/budgets/debit', { scope: 'tenant:t8/workspace:a', unit: 'TOKENS', amount: 7, idempotencyKey: key() });
    assert.equal((await balance('tenant:t8')).spent, 7);
    await call('POST', '/v1/budgets/reset', { scope: 'tenant:t8', unit: 'TOKENS', idempotencyKey: key() });
    assert.equal((await balance('tenant:t8')).spent, 0);
    assert.equal((await balance('tenant:t8/workspace:a')).spent, 7, 'reset touches only its scope');
  });
});

describe('deleting a budget', () => {
  it('is refused while reservations hold amounts at it, then removes the level for later reservations', async () => {
    await put('tenant:del', 1000);
    await put('tenant:del/workspace:w', 500);
    const g = (await call('POST', '/v1/reservations', { scope: 'tenant:del/workspace:w', unit: 'TOKENS', amount: 100, idempotencyKey: key() })).json();
    const busy = await rt.app!.inject({ method: 'DELETE', url: '/v1/budgets?scope=tenant:del&unit=TOKENS' });
    assert.equal(busy.statusCode, 409);
    assert.equal(busy.json().code, 'BUDGET_HAS_RESERVATIONS');
    assert.equal(busy.json().details.reserved, 100);
    assert.equal((await balance('tenant:del')).reserved, 100, 'nothing was deleted');
    assert.equal((await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 60 })).statusCode, 200);
    const del = await rt.app!.inject({ method: 'DELETE', url: '/v1/budgets?scope=tenant:del&unit=TOKENS' });
    assert.equal(del.statusCode, 200, del.body);
    assert.deepEqual(del.json(), { scope: 'tenant:del', unit: 'TOKENS', allocated: 1000, remaining: 940, reserved: 0, spent: 60, debt: 0 });
    const rows = (await call('GET', '/v1/balances?scope=tenant:del&unit=TOKENS')).json().balances.map((b: { scope: string }) => b.scope);
    assert.deepEqual(rows, ['tenant:del/workspace:w'], 'the child keeps its budget');
    const next = (await call('POST', '/v1/reservations', { scope: 'tenant:del/workspace:w', unit: 'TOKENS', amount: 10, idempotencyKey: key() })).json();
    assert.deepEqual(next.scopes, ['tenant:del/workspace:w'], 'the deleted level is skipped');
    const again = await rt.app!.inject({ method: 'DELETE', url: '/v1/budgets?scope=tenant:del&unit=TOKENS' });
    assert.equal(again.statusCode, 404);
    assert.equal(again.json().code, 'BUDGET_NOT_FOUND');
    const bad = await rt.app!.inject({ method: 'DELETE', url: '/v1/budgets?scope=tenant:del' });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /unit/);
  });
});

describe('balances query validation', () => {
  it('names the query field of a bad scope as querystring/scope, as every other query field is named', async () => {
    for (const scope of ['workspace:x', 'tenant:a b', 'tenant:x/team:y', 'tenant:a/agent:x/workspace:y']) {
      const r = await call('GET', `/v1/balances?scope=${encodeURIComponent(scope)}`);
      assert.equal(r.statusCode, 400, scope);
      assert.equal(r.json().code, 'INVALID_SCOPE');
      assert.match(r.json().message, /^querystring\/scope: /, scope);
    }
    assert.match((await call('GET', '/v1/balances?scope=workspace:x')).json().message, /^querystring\/scope: must start with "tenant:<name>"/);
  });
});
