import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('draws');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

interface Row {
  allocated: number;
  remaining: number;
  reserved: number;
  spent: number;
  debt: number;
}
async function balance(scope: string): Promise<Row> {
  const r = await call('GET', `/v1/balances?scope=${encodeURIComponent(scope)}&unit=TOKENS`);
  assert.equal(r.statusCode, 200, r.body);
  return r.json().balances.find((x: { scope: string }) => x.scope === scope);
}
const identity = (b: Row) => assert.equal(b.allocated, b.remaining + b.reserved + b.spent - b.debt, JSON.stringify(b));

let n = 0;
const key = () => `d-${n++}`;

async function parent(tenant: string, allocated: number, amount: number, ttlMs = 60_000): Promise<string> {
  assert.equal((await call('PUT', '/v1/budgets', { scope: `tenant:${tenant}`, unit: 'TOKENS', allocated })).statusCode, 201);
  assert.equal((await call('PUT', '/v1/budgets', { scope: `tenant:${tenant}/workspace:w`, unit: 'TOKENS', allocated })).statusCode, 201);
  const r = await call('POST', '/v1/reservations', { scope: `tenant:${tenant}/workspace:w`, unit: 'TOKENS', amount, ttlMs, idempotencyKey: key() });
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id;
}
const draw = (id: string, amount: number, extra: Record<string, unknown> = {}) => call('POST', `/v1/reservations/${id}/draws`, { amount, idempotencyKey: key(), ...extra });

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('draws: sub-agents share a request reservation', () => {
  it('draws from the free hold, commits what was used as spend, and the parent commits its own part', async () => {
    const p = await parent('a', 1000, 600);
    const d1 = await draw(p, 200);
    assert.equal(d1.statusCode, 201, d1.body);
    const g = d1.json();
    assert.equal(g.parent, p);
    assert.equal(g.scope, 'tenant:a/workspace:w');
    assert.equal(g.unit, 'TOKENS');
    assert.equal((await call('GET', `/v1/reservations/${p}`)).json().drawn, 200);
    assert.equal((await call('GET', `/v1/reservations/${g.id}`)).json().parent, p);
    // Nothing moves at the budgets when drawing: the parent already holds it.
    assert.deepEqual(await balance('tenant:a/workspace:w'), { ...(await balance('tenant:a/workspace:w')), remaining: 400, reserved: 600, spent: 0 });

    const over = await draw(p, 401);
    assert.equal(over.statusCode, 409);
    assert.equal(over.json().code, 'RESERVATION_EXHAUSTED');
    assert.equal(over.json().details.available, 400);

    // The parent cannot finish while a draw is active.
    const early = await call('POST', `/v1/reservations/${p}/commit`, { amount: 10 });
    assert.equal(early.statusCode, 409);
    assert.equal(early.json().code, 'RESERVATION_HAS_ACTIVE_DRAWS');
    assert.equal(early.json().details.drawn, 200);
    assert.equal((await call('POST', `/v1/reservations/${p}/release`, {})).json().code, 'RESERVATION_HAS_ACTIVE_DRAWS');

    const c = await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 150 });
    assert.equal(c.statusCode, 200, c.body);
    assert.deepEqual(c.json(), { id: g.id, state: 'COMMITTED', reserved: 200, charged: 150, released: 50, debt: 0, overrun: 0 });
    for (const s of ['tenant:a', 'tenant:a/workspace:w']) {
      const b = await balance(s);
      assert.deepEqual([b.remaining, b.reserved, b.spent], [400, 450, 150], `${s}: the draw's use became spend, its unused 50 went back to the parent's hold`);
      identity(b);
    }
    const pv = (await call('GET', `/v1/reservations/${p}`)).json();
    assert.equal(pv.amount, 450);
    assert.equal(pv.drawn, undefined);

    const pc = await call('POST', `/v1/reservations/${p}/commit`, { amount: 300 });
    assert.equal(pc.statusCode, 200, pc.body);
    assert.deepEqual(pc.json(), { id: p, state: 'COMMITTED', reserved: 450, charged: 300, released: 150, debt: 0, overrun: 0 });
    const b = await balance('tenant:a/workspace:w');
    assert.deepEqual([b.remaining, b.reserved, b.spent], [550, 0, 450], 'charged once: 150 by the draw, 300 by the parent');
  });

  it('a draw that uses more than its parent can cover is charged in full; the rest is an overrun at the budgets', async () => {
    const p = await parent('b', 1000, 300);
    const g = (await draw(p, 100)).json();
    const ok = await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 250 });
    assert.equal(ok.json().charged, 250);
    let b = await balance('tenant:b/workspace:w');
    assert.deepEqual([b.remaining, b.reserved, b.spent], [700, 50, 250]);
    identity(b);
    const g2 = (await draw(p, 50)).json();
    const big = await call('POST', `/v1/reservations/${g2.id}/commit`, { amount: 61 });
    assert.equal(big.statusCode, 200, big.body);
    assert.deepEqual([big.json().charged, big.json().overrun], [61, 11], 'the parent covered 50; 11 came from the budgets, unreserved (REJECT)');
    b = await balance('tenant:b/workspace:w');
    assert.deepEqual([b.remaining, b.reserved, b.spent], [689, 0, 311]);
    identity(b);
    // The parent, its draws settled, settles too.
    const pc = await call('POST', `/v1/reservations/${p}/commit`, { amount: 0 });
    assert.equal(pc.statusCode, 200, pc.body);
  });

  it('released and expired draws go back to the parent; a parent that expires takes its draws with it', async () => {
    const p = await parent('c', 1000, 500);
    const g1 = (await draw(p, 200)).json();
    const rel = await call('POST', `/v1/reservations/${g1.id}/release`, {});
    assert.equal(rel.json().released, 200);
    assert.equal((await call('GET', `/v1/reservations/${p}`)).json().drawn, undefined);
    const g2 = (await draw(p, 500, { ttlMs: 1 })).json();
    await new Promise((r) => setTimeout(r, 5));
    // A use reported after the draw expired is charged from the parent's (still active) hold.
    const lateDraw = await call('POST', `/v1/reservations/${g2.id}/commit`, { amount: 1 });
    assert.deepEqual([lateDraw.json().charged, lateDraw.json().late], [1, true]);
    assert.equal((await draw(p, 499)).statusCode, 201, 'the expired draw’s amount is free again');

    // A draw never outlives its parent; when the parent expires, its hold (the draws' part too) goes back once.
    // The parent lives 30 ms, so the draw must reach it within that: on a busy machine it may not, and the draw is
    // refused as expired; then again on a fresh tenant with twice the time, until a draw is granted.
    let d = '';
    let q = '';
    let g3: { id: string; expiresAt: number } | undefined;
    for (let ttl = 30; !g3; ttl *= 2) {
      d = `d${ttl}`;
      q = await parent(d, 1000, 400, ttl);
      const r = await draw(q, 300, { ttlMs: 60_000 });
      if (r.statusCode === 201) g3 = r.json();
      else assert.ok(ttl < 60_000 && r.statusCode === 409 && r.json().code === 'RESERVATION_EXPIRED', r.body);
    }
    const qExpires = (await call('GET', `/v1/reservations/${q}`)).json().expiresAt as number;
    assert.ok(g3.expiresAt <= qExpires);
    // Past the parent's deadline (its expiresAt is Redis's TIME; this machine's clock is the same).
    await new Promise((r) => setTimeout(r, Math.max(0, qExpires - Date.now()) + 10));
    const mod = rt.modules.find((m) => m.name === 'budgets') as unknown as { reservations: { expireDue(t: string): Promise<number> } };
    assert.equal(await mod.reservations.expireDue(d), 2);
    let b = await balance(`tenant:${d}/workspace:w`);
    assert.deepEqual([b.remaining, b.reserved, b.spent], [1000, 0, 0]);
    // The sub-agent reports after everything expired: its use is charged at the parent's scopes, once.
    const late = await call('POST', `/v1/reservations/${g3.id}/commit`, { amount: 10 });
    assert.deepEqual([late.json().charged, late.json().late], [10, true]);
    for (const s of [`tenant:${d}`, `tenant:${d}/workspace:w`]) {
      b = await balance(s);
      assert.deepEqual([b.remaining, b.reserved, b.spent], [990, 0, 10], s);
    }
  });

  it('replays a draw by its idempotency key, refuses draws of draws, of finished reservations, and dry-runs', async () => {
    const p = await parent('e', 1000, 300);
    const body = { amount: 100, idempotencyKey: 'draw-once' };
    const first = await call('POST', `/v1/reservations/${p}/draws`, body);
    const again = await call('POST', `/v1/reservations/${p}/draws`, body);
    assert.equal(again.json().id, first.json().id);
    assert.equal(again.json().replayed, true);
    assert.equal((await call('GET', `/v1/reservations/${p}`)).json().drawn, 100, 'held once');
    assert.equal((await call('POST', `/v1/reservations/${p}/draws`, { ...body, amount: 5 })).json().code, 'IDEMPOTENCY_KEY_REUSED');
    const nested = await draw(first.json().id, 10);
    assert.equal(nested.statusCode, 400);
    assert.equal(nested.json().code, 'NESTED_DRAW');
    const dry = await draw(p, 200, { dryRun: true });
    assert.equal(dry.statusCode, 200);
    assert.deepEqual(dry.json(), { dryRun: true, allowed: true, parent: p, amount: 200 });
    assert.equal((await draw(p, 201, { dryRun: true })).json().code, 'RESERVATION_EXHAUSTED');
    assert.equal((await call('POST', `/v1/reservations/${first.json().id}/release`, {})).statusCode, 200);
    assert.equal((await call('POST', `/v1/reservations/${p}/release`, {})).statusCode, 200);
    const late = await draw(p, 1);
    assert.equal(late.statusCode, 409);
    assert.equal(late.json().code, 'RESERVATION_FINALIZED');
    const missing = await draw('e~nope', 1);
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'RESERVATION_NOT_FOUND');
    const bad = await call('POST', `/v1/reservations/${p}/draws`, { amount: -1, idempotencyKey: 'x' });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /amount/);
  });

  it('200 concurrent draws and commits: every use charged once, the parent hold covers what it can', async () => {
    const p = await parent('f', 100_000, 10_000);
    let granted = 0;
    let charged = 0;
    let fromHold = 0;
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const r = await draw(p, 40 + (i % 50));
        if (r.statusCode !== 201) {
          assert.equal(r.json().code, 'RESERVATION_EXHAUSTED');
          return;
        }
        granted++;
        const g = r.json();
        // Some sub-agents use more than they drew (covered by the parent's free hold, else charged as an overrun),
        // some less: every commit is charged.
        const use = i % 3 === 0 ? g.amount * 2 : Math.floor(g.amount / 2);
        const c = await call('POST', `/v1/reservations/${g.id}/commit`, { amount: use });
        assert.equal(c.statusCode, 200, c.body);
        assert.equal(c.json().charged, use);
        charged += use;
        fromHold += use - c.json().overrun;
      }),
    );
    assert.ok(granted > 100, `most draws were granted (${granted})`);
    const b = await balance('tenant:f/workspace:w');
    identity(b);
    assert.equal(b.spent, charged, 'every commit charged exactly once');
    const pv = (await call('GET', `/v1/reservations/${p}`)).json();
    assert.equal(pv.amount + fromHold, 10_000, 'the parent hold shrank by exactly what it covered of its draws');
    assert.equal(pv.drawn, undefined);
    assert.equal(b.reserved, pv.amount);
  });
});
