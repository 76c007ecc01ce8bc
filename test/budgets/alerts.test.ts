import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import fc from 'fast-check';
import { after, before, describe, it } from 'node:test';
import type { BudgetAlert } from '../../src/budgets/alerts.js';
import { budgetOverview } from '../../src/budgets/overview.js';
import { ReservationService } from '../../src/budgets/reservations.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { harness, ledgerViolation, readLedger, type Harness } from './harness.js';

describe('threshold alerts', () => {
  const prefix = testPrefix('budget-alerts');
  let rt: Running;
  let hook: Server;
  const received: Record<string, unknown>[] = [];
  before(async () => {
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push(JSON.parse(body) as Record<string, unknown>);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    rt = await startTest(prefix, {}, { APPORTION_BUDGET_ALERT_WEBHOOK: `http://127.0.0.1:${port}/alerts`, APPORTION_RESERVATION_SWEEP_MS: '3600000' });
  });
  after(async () => {
    await rt.close();
    hook.close();
    await dropPrefix(prefix);
  });

  it('emits 50/80/100 % crossings once each: counted in /metrics and posted to the webhook', async () => {
    const call = (method: 'PUT' | 'POST' | 'GET', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });
    await call('PUT', '/v1/budgets', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', allocated: 100 });
    const g = (await call('POST', '/v1/reservations', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', amount: 60, idempotencyKey: 'a1' })).json();
    assert.equal((await call('POST', `/v1/reservations/${g.id}/commit`, { amount: 55 })).statusCode, 200);
    assert.equal((await call('POST', '/v1/budgets/debit', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', amount: 2, idempotencyKey: 'd1' })).statusCode, 200);
    assert.equal((await call('POST', '/v1/budgets/debit', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', amount: 30, idempotencyKey: 'd2' })).statusCode, 200);
    assert.equal((await call('POST', '/v1/budgets/debit', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', amount: 13, idempotencyKey: 'd3' })).statusCode, 200);
    // A replayed debit does not alert again.
    await call('POST', '/v1/budgets/debit', { scope: 'tenant:al/workspace:w', unit: 'TOKENS', amount: 13, idempotencyKey: 'd3' });
    await eventually(() => received.length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      // Deliveries run concurrently: compare in threshold order.
      received.map((a) => [a.type, a.scope, a.threshold, a.used]).sort((x, y) => Number(x[2]) - Number(y[2])),
      [
        ['budget.threshold', 'tenant:al/workspace:w', 50, 55],
        ['budget.threshold', 'tenant:al/workspace:w', 80, 87],
        ['budget.threshold', 'tenant:al/workspace:w', 100, 100],
      ],
    );
    const metrics = (await call('GET', '/metrics')).body;
    for (const t of ['50', '80', '100']) assert.match(metrics, new RegExp(`apportion_budget_alerts_total\\{threshold="${t}"\\} 1\\b`));
    assert.match(metrics, /apportion_budget_alert_deliveries_total\{result="ok"\} 3\b/);
  });
});

describe('calendar periods', () => {
  const prefix = testPrefix('budget-period');
  let h: Harness;
  before(async () => {
    h = await harness(prefix, Date.UTC(2026, 10, 30, 23, 0));
  });
  after(async () => {
    await h.close();
    await dropPrefix(prefix);
  });

  it('starts a new day or month with nothing spent, keeping active reservations held', async () => {
    await h.ledger.put({ scope: 'tenant:pd/agent:d', unit: 'TOKENS', allocated: 100, period: 'day' });
    await h.ledger.put({ scope: 'tenant:pd', unit: 'TOKENS', allocated: 1000, period: 'month' });
    const a = await h.reservations.reserve({ scope: 'tenant:pd/agent:d', unit: 'TOKENS', amount: 80, ttlMs: 86_400_000, idempotencyKey: 'a' });
    const b = await h.reservations.reserve({ scope: 'tenant:pd/agent:d', unit: 'TOKENS', amount: 20, ttlMs: 86_400_000, idempotencyKey: 'b' });
    await h.reservations.commit('id' in a ? a.id : '', 80);
    await assert.rejects(h.reservations.reserve({ scope: 'tenant:pd/agent:d', unit: 'TOKENS', amount: 1, idempotencyKey: 'c' }), /BUDGET_EXCEEDED|exceeds/);
    h.clock.now = Date.UTC(2026, 11, 1, 0, 30); // next day, next month
    const [day, month] = [await h.ledger.balances('tenant:pd/agent:d'), await h.ledger.balances('tenant:pd')];
    assert.deepEqual([day[0]!.spent, day[0]!.reserved, day[0]!.remaining], [0, 20, 80], 'b stays held across the reset');
    const monthRow = month.find((x) => x.scope === 'tenant:pd')!;
    assert.deepEqual([monthRow.spent, monthRow.reserved, monthRow.remaining], [0, 20, 980]);
    await h.reservations.commit('id' in b ? b.id : '', 20);
    const after1 = (await h.ledger.balances('tenant:pd/agent:d'))[0]!;
    assert.deepEqual([after1.spent, after1.reserved, after1.remaining], [20, 0, 80], 'charged to the new period');
    h.clock.now = Date.UTC(2026, 11, 2, 0, 30); // next day, same month
    assert.equal((await h.ledger.balances('tenant:pd/agent:d'))[0]!.spent, 0);
    assert.equal((await h.ledger.balances('tenant:pd')).find((x) => x.scope === 'tenant:pd')!.spent, 20);
    // Changing the period setting (month → day, then none) keeps what this period spent.
    await h.ledger.op('debit', { scope: 'tenant:pd', unit: 'TOKENS', amount: 5, idempotencyKey: 'p1' });
    const toDay = await h.ledger.put({ scope: 'tenant:pd', unit: 'TOKENS', allocated: 1000, period: 'day' });
    assert.equal(toDay.spent, 25);
    const toNone = await h.ledger.put({ scope: 'tenant:pd', unit: 'TOKENS', allocated: 1000 });
    assert.equal(toNone.spent, 25);
    h.clock.now = Date.UTC(2026, 11, 9, 0, 30);
    assert.equal((await h.ledger.balances('tenant:pd')).find((x) => x.scope === 'tenant:pd')!.spent, 25, 'no period: never reset');
  });
});

describe('calendar periods with two processes whose clocks straddle the boundary', () => {
  const prefix = testPrefix('budget-period-skew');
  // Process A's clock is behind (still the old day), B's is past the UTC boundary; both drive the same budgets.
  let a: Harness;
  let b: Harness;
  before(async () => {
    a = await harness(prefix);
    b = await harness(prefix);
  });
  after(async () => {
    await a.close();
    await b.close();
    await dropPrefix(prefix);
  });

  type Op = { by: 'A' | 'B'; kind: 'read' | 'commit' | 'debit' | 'put'; amount: number };
  const opArb: fc.Arbitrary<Op> = fc.record({
    by: fc.constantFrom('A', 'B'),
    kind: fc.constantFrom('read', 'commit', 'debit', 'put'),
    amount: fc.integer({ min: 1, max: 1000 }),
  });
  // A day boundary inside a month, a month boundary, and a year boundary (the month period rolls at the last two).
  const boundaryArb = fc.constantFrom(Date.UTC(2026, 10, 15), Date.UTC(2026, 11, 1), Date.UTC(2027, 0, 1));
  const seen = { rolls: 0, laggingCharges: 0 };
  let run = 0;

  it('a period only rolls forward: a caller behind the stored period reads and charges it, never resets it', async () => {
    await fc.assert(
      fc.asyncProperty(
        boundaryArb,
        fc.constantFrom<'day' | 'month'>('day', 'month'),
        fc.integer({ min: 1, max: 3_600_000 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        async (boundary, period, behindMs, aheadMs, ops) => {
          const scope = `tenant:skew${run++}`;
          a.clock.now = boundary - behindMs;
          b.clock.now = boundary + aheadMs;
          const rolls = period === 'day' || new Date(boundary).getUTCDate() === 1;
          await a.ledger.put({ scope, unit: 'TOKENS', allocated: 1_000_000, period });
          // Spent in the old period, by A before the boundary.
          await a.ledger.op('debit', { scope, unit: 'TOKENS', amount: 500, idempotencyKey: `${scope}-0` });
          // The model: the stored period is the latest any caller has brought; charges go to it.
          let newPeriod = false;
          let used = 500;
          const touch = (by: 'A' | 'B') => {
            if (by === 'B' && rolls && !newPeriod) {
              newPeriod = true;
              used = 0;
              seen.rolls++;
            }
            if (by === 'A' && newPeriod) seen.laggingCharges++;
          };
          for (const [j, op] of ops.entries()) {
            const h = op.by === 'A' ? a : b;
            touch(op.by);
            if (op.kind === 'read') await h.ledger.balances(scope, 'TOKENS');
            else if (op.kind === 'put') await h.ledger.put({ scope, unit: 'TOKENS', allocated: 1_000_000, period });
            else if (op.kind === 'debit') {
              await h.ledger.op('debit', { scope, unit: 'TOKENS', amount: op.amount, idempotencyKey: `${scope}-${j + 1}` });
              used += op.amount;
            } else {
              const g = await h.reservations.reserve({ scope, unit: 'TOKENS', amount: op.amount, idempotencyKey: `${scope}-${j + 1}` });
              assert.ok('id' in g);
              await h.reservations.commit(g.id, op.amount);
              used += op.amount;
            }
            // Read by the lagging process (which must not roll anything back) and straight from Redis.
            const [bal] = await a.ledger.balances(scope, 'TOKENS');
            assert.equal(bal!.spent + bal!.debt, used, `after ${j + 1} ops (${JSON.stringify(op)}): ${JSON.stringify(bal)}`);
            const l = await readLedger(a.redis, a.keys.budget(scope.slice(7), 'TOKENS', scope));
            assert.equal(ledgerViolation(l), undefined);
            assert.equal(l.s + l.d, used);
          }
        },
      ),
      { numRuns: 60, seed: 20261203, endOnFailure: true },
    );
    assert.ok(seen.rolls >= 20, `periods rolled (${seen.rolls})`);
    assert.ok(seen.laggingCharges >= 20, `touches by the lagging process after a roll (${seen.laggingCharges})`);
  });

  it('a settings PUT from a clock behind keeps the later period, also when it changes the period kind', async () => {
    const boundary = Date.UTC(2027, 0, 1);
    a.clock.now = boundary - 30_000;
    b.clock.now = boundary + 30_000;
    const scope = 'tenant:skewput';
    const spent = async () => {
      const [x] = await a.ledger.balances(scope, 'TOKENS');
      return x!.spent;
    };
    await a.ledger.put({ scope, unit: 'TOKENS', allocated: 1000, period: 'day' });
    await a.ledger.op('debit', { scope, unit: 'TOKENS', amount: 100, idempotencyKey: 'sp0' });
    await b.ledger.op('debit', { scope, unit: 'TOKENS', amount: 7, idempotencyKey: 'sp1' }); // 2027-01-01 starts: 7
    for (const period of ['month', 'day', 'month'] as const) {
      assert.equal((await a.ledger.put({ scope, unit: 'TOKENS', allocated: 1000, period })).spent, 7, period);
      // B, in the stored period all along, sees no new one: nothing is reset.
      await b.ledger.balances(scope, 'TOKENS');
      assert.equal(await spent(), 7, period);
    }
  });
});

describe('overrun alerts', () => {
  const prefix = testPrefix('budget-overrun');
  let h: Harness;
  before(async () => {
    h = await harness(prefix);
  });
  after(async () => {
    await h.close();
    await dropPrefix(prefix);
  });

  it('a commit above what the policy allows is charged, and each overrun scope raises one budget.overrun alert', async () => {
    const alerts: BudgetAlert[] = [];
    const svc = new ReservationService({ redis: h.redis, keys: h.keys, retentionMs: 3_600_000, now: () => h.clock.now, onAlerts: (a) => alerts.push(...a) });
    await h.ledger.put({ scope: 'tenant:ov', unit: 'TOKENS', allocated: 1000, overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 100 });
    await h.ledger.put({ scope: 'tenant:ov/agent:a', unit: 'TOKENS', allocated: 100 }); // REJECT
    const g = await svc.reserve({ scope: 'tenant:ov/agent:a', unit: 'TOKENS', amount: 40, idempotencyKey: 'o1' });
    assert.ok('id' in g);
    const c = await svc.commit(g.id, 70);
    assert.deepEqual([c.charged, c.overrun, c.debt], [70, 30, 0]);
    const overruns = alerts.filter((a) => a.type === 'budget.overrun');
    assert.deepEqual(
      overruns.map((a) => (a.type === 'budget.overrun' ? [a.scope, a.overrun, a.used, a.reservation] : [])).sort(),
      [
        ['tenant:ov', 30, 70, g.id],
        ['tenant:ov/agent:a', 30, 70, g.id],
      ],
      'REJECT at the agent: none of the overage was allowed, at any level',
    );
    const stream = await h.redis.xrange(h.keys.overruns('ov'), '-', '+');
    assert.equal(stream.filter(([, f]) => f.includes('overrun')).length, 2, 'in the tenant overrun stream too');
    // The agent crossed 50 % as well: threshold alerts are unchanged.
    assert.ok(alerts.some((a) => a.type === 'budget.threshold' && a.scope === 'tenant:ov/agent:a' && a.threshold === 50));
    const bal = (await h.ledger.balances('tenant:ov/agent:a'))[0]!;
    assert.deepEqual([bal.spent, bal.overrun], [70, 30]);
  });

  it('the overview lists overruns apart, with their kind, amount and reservation; any number of them leaves the threshold alerts listed', async () => {
    const scope = 'tenant:ovl/agent:a';
    await h.ledger.put({ scope, unit: 'TOKENS', allocated: 100_000 }); // REJECT: every use above a hold is an overrun
    await h.ledger.op('debit', { scope, unit: 'TOKENS', amount: 50_000, idempotencyKey: 'ovl-50' });
    await h.ledger.op('debit', { scope, unit: 'TOKENS', amount: 30_000, idempotencyKey: 'ovl-80' });
    // More overruns than the console lists and than a capped stream keeps (~1000), generated from a seed.
    const extras = fc.sample(fc.integer({ min: 1, max: 5 }), { numRuns: 1100, seed: 20261203 });
    const ids: string[] = [];
    for (let from = 0; from < extras.length; from += 100) {
      await Promise.all(
        extras.slice(from, from + 100).map(async (extra, j) => {
          const g = await h.reservations.reserve({ scope, unit: 'TOKENS', amount: 1, idempotencyKey: `ovl-r${from + j}` });
          assert.ok('id' in g);
          const c = await h.reservations.commit(g.id, 1 + extra);
          assert.equal(c.overrun, extra);
          ids[from + j] = g.id;
        }),
      );
    }
    const ov = await budgetOverview(h.redis, h.keys, 100, 'ovl');
    assert.deepEqual(
      ov.alerts.map((a) => [a.kind, a.scope, a.threshold]),
      [
        ['threshold', scope, 80],
        ['threshold', scope, 50],
      ],
      'threshold alerts are not crowded out by the overruns after them',
    );
    assert.equal(ov.overruns.length, 100);
    for (const o of ov.overruns) {
      assert.equal(o.kind, 'overrun');
      assert.equal(o.scope, scope);
      const j = ids.indexOf(o.reservation ?? '');
      assert.ok(j >= 0, `names its reservation: ${JSON.stringify(o)}`);
      assert.equal(o.overrun, extras[j], 'the amount charged beyond the policy');
      assert.equal(o.allocated, 100_000);
      assert.ok(o.used > 80_000);
    }
    assert.ok(ov.overruns.every((o, j) => j === 0 || ov.overruns[j - 1]!.at >= o.at), 'newest first');
  });
});
