import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { OveragePolicy } from '../../src/budgets/schema.js';
import { AppError } from '../../src/errors/app-error.js';
import { dropPrefix, testPrefix } from '../helpers/env.js';
import { harness, ledgerViolation, readLedger, type Harness } from './harness.js';

const prefix = testPrefix('budget-prop');
let h: Harness;
before(async () => {
  h = await harness(prefix);
});
after(async () => {
  await h.close();
  await dropPrefix(prefix);
});

/** How a commit relates to the hold: under it, exactly it, or over it (by up to 150 %). */
type Use = 'under' | 'exact' | 'over';
type Op =
  | { kind: 'reserve'; scope: number; amount: number; ttl: number }
  | { kind: 'commit'; res: number; use: Use; percent: number }
  | { kind: 'release'; res: number }
  | { kind: 'extend'; res: number; ttl: number }
  | { kind: 'replay'; res: number }
  | { kind: 'draw'; res: number; amount: number }
  | { kind: 'debit'; scope: number; amount: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'expire'; ms: number }
  | { kind: 'settings'; scope: number; allocated: number; policy: OveragePolicy; limit: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('reserve' as const), scope: fc.nat(4), amount: fc.integer({ min: 1, max: 400 }), ttl: fc.integer({ min: 10, max: 5000 }) }) },
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('commit' as const), res: fc.nat(), use: fc.constantFrom<Use>('under', 'exact', 'over'), percent: fc.integer({ min: 0, max: 150 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), res: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('extend' as const), res: fc.nat(), ttl: fc.integer({ min: 1, max: 4000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replay' as const), res: fc.nat() }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('draw' as const), res: fc.nat(), amount: fc.integer({ min: 1, max: 120 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('debit' as const), scope: fc.nat(4), amount: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const), ms: fc.integer({ min: 1, max: 6000 }) }) },
  // A PUT of new settings (allocation, policy, overdraft limit) while reservations, debt and overruns stand.
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('settings' as const),
      scope: fc.nat(3),
      allocated: fc.integer({ min: 0, max: 2000 }),
      policy: fc.constantFrom<OveragePolicy>('REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT'),
      limit: fc.integer({ min: 0, max: 600 }),
    }),
  },
);

const POLICIES: readonly OveragePolicy[] = ['REJECT', 'ALLOW_IF_AVAILABLE', 'ALLOW_WITH_OVERDRAFT'];
const policyArb = fc.constantFrom(...POLICIES);
const TERMINAL = new Set(['COMMITTED', 'RELEASED', 'EXPIRED']);

interface Made {
  readonly id: string;
  /** The scope the reservation (a draw: its parent) holds at. */
  readonly scope: string;
  readonly amount: number;
  readonly key: string;
  readonly ttl: number;
  readonly parent?: string;
  /** Latest deadline the server answered: an extension never moves it back. */
  exp: number;
  /** The use the client reported (first commit call), and whether the server has charged it. */
  used?: number;
  charged: boolean;
  released: boolean;
}

/** Scopes (budgeted: 0..3; 4 = an agent without a budget of its own, held at the tenant). */
const scopesOf = (t: string) => [`tenant:${t}`, `tenant:${t}/workspace:w`, `tenant:${t}/workspace:w/agent:a`, `tenant:${t}/workspace:w/agent:b`, `tenant:${t}/agent:c`];
const under = (scope: string, s: string) => scope === s || scope.startsWith(`${s}/`);

let run = 0;
/** Per policy of the reservations' own scope: commits above their hold, after expiry, and of draws the runs made. */
const seen = { over: 0, late: 0, drawCommits: 0, overrun: 0, settings: 0 };

async function property(leafPolicy: OveragePolicy, parentPolicies: OveragePolicy[], batches: Op[][]): Promise<void> {
  const t = `p${run++}`;
  const scopes = scopesOf(t);
  // Children sum to more than the parents. Agent a's policy is the one under test; the others vary per run.
  const policies = [parentPolicies[0]!, parentPolicies[1]!, leafPolicy, parentPolicies[2]!];
  const allocated = [1500, 1000, 600, 500];
  const overdraft = [500, 200, 300, 100];
  for (let i = 0; i < 4; i++) {
    await h.ledger.put({
      scope: scopes[i]!,
      unit: 'TOKENS',
      allocated: allocated[i]!,
      overagePolicy: policies[i]!,
      ...(policies[i] === 'ALLOW_WITH_OVERDRAFT' ? { overdraftLimit: overdraft[i]! } : {}),
    });
  }
  const budgetKeys = scopes.slice(0, 4).map((s) => h.keys.budget(t, 'TOKENS', s));
  const made: Made[] = [];
  const finished = new Map<string, string>();
  /** Σ reported used per budgeted scope (commits and debits the server accepted); Σ overage bound per scope. */
  const reported = new Map<string, number>();
  const overageBound = new Map<string, number>();
  let seq = 0;
  const bump = (m: Map<string, number>, scope: string, n: number) => {
    for (const s of scopes.slice(0, 4)) if (under(scope, s)) m.set(s, (m.get(s) ?? 0) + n);
  };
  const expectOnly = (e: unknown, codes: string[]) => {
    if (!(e instanceof AppError) || !codes.includes(e.code)) throw e;
  };
  const pick = (res: number): Made | undefined => {
    // Half the time the target is a draw (when there are any), so draws are exercised as much as parents.
    const draws = made.filter((x) => x.parent);
    const pool = res % 2 === 1 && draws.length > 0 ? draws : made;
    return pool[Math.floor(res / 2) % Math.max(1, pool.length)];
  };

  const commit = async (m: Made, amount: number): Promise<void> => {
    try {
      const c = await h.reservations.commit(m.id, amount);
      assert.equal(c.charged, amount, 'a commit charges exactly the use reported');
      if (c.replayed) {
        assert.ok(m.charged && m.used === amount, `${m.id}: only a charged commit replays`);
        return;
      }
      assert.ok(!m.charged, `${m.id} charged twice`);
      assert.ok(finished.get(m.id) === undefined || finished.get(m.id) === 'EXPIRED', `${m.id} committed after it was ${finished.get(m.id)}`);
      m.charged = true;
      m.used = amount;
      finished.set(m.id, 'COMMITTED');
      bump(reported, m.scope, amount);
      bump(overageBound, m.scope, c.late ? amount : Math.max(0, amount - c.reserved));
      if (amount > m.amount) seen.over++;
      if (c.late) seen.late++;
      if (c.overrun > 0) seen.overrun++;
      if (m.parent) seen.drawCommits++;
    } catch (e) {
      // Spend is refused only when the client already settled the reservation otherwise (released it, or
      // committed another amount), or for a parent whose draws are still running (settled at the end).
      expectOnly(e, ['RESERVATION_FINALIZED', 'RESERVATION_HAS_ACTIVE_DRAWS']);
      if ((e as AppError).code === 'RESERVATION_FINALIZED') assert.ok(m.released || m.charged, `${m.id}: a commit refused as finalized while neither released nor charged`);
      else if (m.used === undefined) m.used = amount;
    }
  };

  const exec = async (op: Op): Promise<void> => {
    switch (op.kind) {
      case 'reserve': {
        const body = { scope: scopes[op.scope]!, unit: 'TOKENS' as const, amount: op.amount, ttlMs: op.ttl, idempotencyKey: `r${seq++}` };
        try {
          const g = await h.reservations.reserve(body);
          if ('id' in g) made.push({ id: g.id, scope: body.scope, amount: op.amount, key: body.idempotencyKey, ttl: op.ttl, exp: g.expiresAt, charged: false, released: false });
        } catch (e) {
          expectOnly(e, ['BUDGET_EXCEEDED']);
        }
        return;
      }
      case 'draw': {
        const m = made[op.res % Math.max(1, made.length)];
        if (!m) return;
        try {
          const g = await h.reservations.draw(m.id, { amount: op.amount, ttlMs: 3000, idempotencyKey: `w${seq++}` });
          if ('id' in g) made.push({ id: g.id, scope: m.scope, amount: op.amount, key: '', ttl: 3000, exp: g.expiresAt, parent: m.id, charged: false, released: false });
        } catch (e) {
          expectOnly(e, ['RESERVATION_EXHAUSTED', 'RESERVATION_FINALIZED', 'RESERVATION_EXPIRED', 'NESTED_DRAW']);
        }
        return;
      }
      case 'replay': {
        const tops = made.filter((x) => !x.parent);
        const m = tops[op.res % Math.max(1, tops.length)];
        if (!m) return;
        const g = await h.reservations.reserve({ scope: m.scope, unit: 'TOKENS', amount: m.amount, ttlMs: m.ttl, idempotencyKey: m.key });
        assert.ok('id' in g && g.id === m.id && g.replayed === true, 'a replay answers with the original reservation');
        return;
      }
      case 'debit': {
        try {
          await h.ledger.op('debit', { scope: scopes[op.scope]!, unit: 'TOKENS', amount: op.amount, idempotencyKey: `d${seq++}` });
          bump(reported, scopes[op.scope]!, op.amount);
        } catch (e) {
          expectOnly(e, ['BUDGET_EXCEEDED', 'OVERDRAFT_LIMIT_EXCEEDED']);
        }
        return;
      }
      case 'settings': {
        try {
          await h.ledger.put({ scope: scopes[op.scope]!, unit: 'TOKENS', allocated: op.allocated, overagePolicy: op.policy, ...(op.policy === 'ALLOW_WITH_OVERDRAFT' ? { overdraftLimit: op.limit } : {}) });
          seen.settings++;
        } catch (e) {
          expectOnly(e, ['ALLOCATION_BELOW_USAGE', 'OVERDRAFT_BELOW_DEBT']);
        }
        return;
      }
      case 'advance':
        h.clock.now += op.ms;
        return;
      case 'expire':
        h.clock.now += op.ms;
        await h.reservations.expireDue(t);
        return;
      case 'commit': {
        const m = pick(op.res);
        if (!m) return;
        // A client reports one use per reservation; a retry repeats it.
        const amount = m.used ?? (op.use === 'exact' ? m.amount : op.use === 'under' ? Math.floor((m.amount * Math.min(op.percent, 99)) / 100) : m.amount + 1 + Math.floor((m.amount * op.percent) / 100));
        if (m.released) return;
        await commit(m, amount);
        return;
      }
      case 'release': {
        const m = pick(op.res);
        if (!m || m.used !== undefined) return; // a client that reported a use does not release
        m.released = true;
        try {
          const r = await h.reservations.release(m.id);
          if (!r.replayed) {
            assert.ok(finished.get(m.id) === undefined, `${m.id} released after it was ${finished.get(m.id)}`);
            finished.set(m.id, 'RELEASED');
          }
        } catch (e) {
          expectOnly(e, ['RESERVATION_FINALIZED', 'RESERVATION_HAS_ACTIVE_DRAWS']);
          if ((e as AppError).code === 'RESERVATION_HAS_ACTIVE_DRAWS') m.released = false;
        }
        return;
      }
      case 'extend': {
        const m = pick(op.res);
        if (!m) return;
        try {
          const x = await h.reservations.extend(m.id, op.ttl);
          assert.ok(x.expiresAt >= m.exp, `${m.id}: extend moved the deadline back from ${m.exp} to ${x.expiresAt}`);
          m.exp = x.expiresAt;
        } catch (e) {
          expectOnly(e, ['RESERVATION_FINALIZED', 'RESERVATION_EXPIRED', 'EXTEND_LIMIT_REACHED']);
        }
        return;
      }
    }
  };

  const check = async (): Promise<void> => {
    const ledgers = await Promise.all(budgetKeys.map((k) => readLedger(h.redis, k)));
    ledgers.forEach((l, i) => {
      const s = scopes[i]!;
      const overrun = l.ov;
      // The settings stored are those of the last PUT (the set-up's or a `settings` op's): no limit without overdraft.
      if (l.p !== 'O') assert.equal(l.o, 0, `${s}: an overdraft limit without the overdraft policy`);
      // The identity and bounds; debt beyond the overdraft the policy allows only as recorded overrun.
      assert.equal(ledgerViolation(l), undefined, `${s}: ${ledgerViolation(l)}`);
      // Σ charged = Σ reported used, always.
      assert.equal(l.s + l.d, reported.get(s) ?? 0, `${s}: spent + debt equals the use reported`);
      // An overrun only ever comes from spend that went beyond its hold.
      assert.ok(overrun <= (overageBound.get(s) ?? 0), `${s}: overrun ${overrun} > overage committed ${overageBound.get(s) ?? 0}`);
    });
    const views = await Promise.all(made.map((m) => h.reservations.get(m.id)));
    views.forEach((v, i) => {
      const m = made[i]!;
      const prev = finished.get(m.id);
      if (prev && prev !== 'EXPIRED') assert.equal(v.state, prev, `${m.id} left terminal state ${prev}`);
      else if (TERMINAL.has(v.state)) finished.set(m.id, v.state);
    });
    // Reserved at a scope = the current holds of the top-level reservations still holding there (ACTIVE, or
    // overdue but not yet swept); a draw never holds more than its parent can cover.
    const raw = await Promise.all(made.map((m) => h.redis.hmget(h.keys.reservation(t, m.id), 'st', 'amt')));
    const held = new Map<string, number>();
    raw.forEach(([st, amt], i) => {
      const m = made[i]!;
      if (!m.parent && st === 'A') bump(held, m.scope, Number(amt));
    });
    made.forEach((m, i) => {
      if (m.parent || raw[i]![0] !== 'A') return;
      const drawn = made.reduce((acc, d, j) => acc + (d.parent === m.id && raw[j]![0] === 'A' ? d.amount : 0), 0);
      assert.ok(drawn <= Number(raw[i]![1]), `${m.id}: draws hold ${drawn} > its hold ${raw[i]![1]}`);
    });
    ledgers.forEach((l, i) => assert.equal(l.v, held.get(scopes[i]!) ?? 0, `${scopes[i]}: reserved equals the held amounts`));
  };

  for (const batch of batches) {
    await Promise.all(batch.map(exec));
    await check();
  }
  // The client settles what it still owes: draws first, then the parents their draws held up. Nothing reported
  // is left uncharged, whatever expired in between.
  for (const m of made.filter((x) => x.parent && x.used !== undefined && !x.charged)) await commit(m, m.used!);
  for (const m of made.filter((x) => !x.parent && x.used !== undefined && !x.charged)) {
    for (const d of made.filter((x) => x.parent === m.id && !x.charged && !x.released)) {
      d.released = true;
      await h.reservations.release(d.id).catch((e: unknown) => expectOnly(e, ['RESERVATION_FINALIZED']));
    }
    await commit(m, m.used!);
    assert.ok(m.charged, `${m.id}: its reported use was charged`);
  }
  await check();
  // Finally everything expires: nothing stays held, and nothing charged moves.
  h.clock.now += 10_000_000;
  await h.reservations.expireDue(t);
  for (const k of budgetKeys) assert.equal((await readLedger(h.redis, k)).v, 0);
  await check();
}

describe('reservations: property test against the real Redis', () => {
  for (const policy of POLICIES) {
    it(`Σ charged = Σ reported used and no scope overspends beyond its policy — agent policy ${policy}, parents random`, async () => {
      const before = { ...seen };
      await fc.assert(
        fc.asyncProperty(
          fc.array(policyArb, { minLength: 3, maxLength: 3 }),
          fc.array(fc.array(opArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 20 }),
          (parents, batches) => property(policy, parents, batches),
        ),
        { numRuns: 40, seed: 20261201 + POLICIES.indexOf(policy), endOnFailure: true },
      );
      // The runs must have exercised what the property is about.
      assert.ok(seen.over - before.over >= 10, `commits above their hold (${seen.over - before.over})`);
      assert.ok(seen.late - before.late >= 3, `commits after expiry (${seen.late - before.late})`);
      assert.ok(seen.drawCommits - before.drawCommits >= 10, `draw commits (${seen.drawCommits - before.drawCommits})`);
      assert.ok(seen.overrun - before.overrun >= 3, `commits with an overrun (${seen.overrun - before.overrun})`);
      assert.ok(seen.settings - before.settings >= 10, `settings changed (${seen.settings - before.settings})`);
    });
  }
});

describe('amounts up to 2^53 − 1: every ledger stays exact', () => {
  type BigOp = { kind: 'fund' | 'debit' | 'commit'; amount: number };
  const amountArb = fc.oneof(fc.integer({ min: 1e15 - 1e6, max: 1e15 }), fc.integer({ min: 1, max: 1e15 }));
  const bigOpArb: fc.Arbitrary<BigOp> = fc.record({ kind: fc.constantFrom('fund', 'debit', 'commit'), amount: amountArb });
  const MAX = BigInt(Number.MAX_SAFE_INTEGER);
  const refused = { fund: 0, debit: 0, commit: 0 };
  let run = 0;

  it('a fund, debit or commit that would pass it is refused with LEDGER_LIMIT_EXCEEDED, writing nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.constant(8), fc.nat(8)), fc.oneof(fc.constant(9), fc.nat(9)), fc.array(bigOpArb, { minLength: 1, maxLength: 24 }), async (prefunds, spends, ops) => {
        const t = `big${run++}`;
        const scope = `tenant:${t}`;
        const unit = 'USD_MICROCENTS';
        const bk = h.keys.budget(t, unit, scope);
        await h.ledger.put({ scope, unit, allocated: 1e15 });
        for (let f = 0; f < prefunds; f++) await h.ledger.op('fund', { scope, unit, amount: 1e15, idempotencyKey: `pre${f}` });
        // Spent up front (at most what was allocated), so that runs start near the bound.
        const prespent = Math.min(spends, prefunds) * 1e15;
        if (prespent > 0) await h.ledger.op('debit', { scope, unit, amount: 1e15, idempotencyKey: 'spend0' });
        for (let f = 1; f < prespent / 1e15; f++) await h.ledger.op('debit', { scope, unit, amount: 1e15, idempotencyKey: `spend${f}` });
        // Holds of 1, committed (over their hold: the rest is an overrun, charged as debt) by the commit ops.
        const holds: string[] = [];
        for (let j = 0; j < 12; j++) {
          const g = await h.reservations.reserve({ scope, unit, amount: 1, ttlMs: 86_400_000, idempotencyKey: `h${j}` });
          assert.ok('id' in g);
          holds.push(g.id);
        }
        let allocated = BigInt(1e15) * BigInt(1 + prefunds);
        let used = BigInt(prespent);
        for (const [j, op] of ops.entries()) {
          const before = await h.redis.hgetall(bk);
          const [s, d, r] = [BigInt(before.s!), BigInt(before.d ?? '0'), BigInt(before.r!)];
          const amount = BigInt(op.amount);
          const idem = `op${j}`;
          let expect: 'ok' | 'LEDGER_LIMIT_EXCEEDED' | 'BUDGET_EXCEEDED';
          if (op.kind === 'fund') expect = allocated + amount > MAX ? 'LEDGER_LIMIT_EXCEEDED' : 'ok';
          else if (s + d + amount > MAX) expect = 'LEDGER_LIMIT_EXCEEDED';
          else expect = op.kind === 'debit' && r < amount ? 'BUDGET_EXCEEDED' : 'ok';
          if (op.kind === 'commit' && holds.length === 0) continue;
          const call =
            op.kind === 'commit' ? h.reservations.commit(holds[0]!, op.amount) : h.ledger.op(op.kind, { scope, unit, amount: op.amount, idempotencyKey: idem });
          const what = `op ${j} ${JSON.stringify(op)} on ${JSON.stringify(before)}`;
          if (expect === 'ok') {
            await call;
            if (op.kind === 'fund') allocated += amount;
            else used += amount;
            if (op.kind === 'commit') holds.shift();
          } else {
            const err = await call.then(
              () => undefined,
              (e: unknown) => e,
            );
            assert.ok(err instanceof AppError && err.code === expect, `${what}: ${String(err)}`);
            if (expect === 'LEDGER_LIMIT_EXCEEDED') {
              refused[op.kind]++;
              assert.match(err.message, /^body\/amount: /);
              assert.deepEqual(await h.redis.hgetall(bk), before, `nothing written: ${what}`);
              if (op.kind === 'commit') assert.equal(await h.redis.hget(h.keys.reservation(t, holds[0]!), 'st'), 'A', 'the reservation stays ACTIVE');
              else assert.equal(await h.redis.exists(h.keys.idempotency(t, idem)), 0, 'the idempotency key is not consumed');
            }
          }
          // Exact, as integers: allocated is the sum of the funds, spent + debt the sum of what was charged.
          const after = await h.redis.hgetall(bk);
          assert.equal(BigInt(after.a!), allocated, what);
          assert.equal(BigInt(after.s!) + BigInt(after.d ?? '0'), used, what);
          assert.equal(BigInt(after.a!), BigInt(after.r!) + BigInt(after.v!) + BigInt(after.s!), `identity: ${what}`);
          assert.equal(ledgerViolation(await readLedger(h.redis, bk)), undefined, what);
          const [bal] = await h.ledger.balances(scope, unit);
          assert.deepEqual([BigInt(bal!.allocated), BigInt(bal!.spent) + BigInt(bal!.debt)], [allocated, used], `balances: ${what}`);
        }
      }),
      { numRuns: 60, seed: 20261203, endOnFailure: true },
    );
    for (const [k, n] of Object.entries(refused)) assert.ok(n >= 5, `${k} refused at the bound ${n} times (${JSON.stringify(refused)})`);
  });
});
