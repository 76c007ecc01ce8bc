import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
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

type Op =
  | { kind: 'reserve'; scope: number; amount: number; ttl: number }
  | { kind: 'commit'; res: number; percent: number }
  | { kind: 'release'; res: number }
  | { kind: 'extend'; res: number }
  | { kind: 'replay'; res: number }
  | { kind: 'draw'; res: number; amount: number }
  | { kind: 'debit'; scope: number; amount: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'sweep' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('reserve' as const), scope: fc.nat(4), amount: fc.integer({ min: 1, max: 400 }), ttl: fc.integer({ min: 10, max: 5000 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('commit' as const), res: fc.nat(), percent: fc.integer({ min: 0, max: 160 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), res: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), res: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replay' as const), res: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('draw' as const), res: fc.nat(), amount: fc.integer({ min: 1, max: 120 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('debit' as const), scope: fc.nat(4), amount: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'sweep' as const }) },
);

const TERMINAL = new Set(['COMMITTED', 'RELEASED', 'EXPIRED']);
/** Draws committed over all runs: the property must have exercised them. */
let drawCommits = 0;

describe('reservations: property test against the real Redis', () => {
  it('keeps every scope’s ledger whole under random concurrent interleavings', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(opArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 25 }), async (batches) => {
        const t = `p${run++}`;
        const scopes = [`tenant:${t}`, `tenant:${t}/workspace:w`, `tenant:${t}/workspace:w/agent:a`, `tenant:${t}/workspace:w/agent:b`, `tenant:${t}/agent:c`];
        // Children sum to more than the parents; the overdraft scope lets commits overrun.
        await h.ledger.put({ scope: scopes[0]!, unit: 'TOKENS', allocated: 1500, overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 500 });
        await h.ledger.put({ scope: scopes[1]!, unit: 'TOKENS', allocated: 1000, overagePolicy: 'ALLOW_IF_AVAILABLE' });
        await h.ledger.put({ scope: scopes[2]!, unit: 'TOKENS', allocated: 600, overagePolicy: 'ALLOW_WITH_OVERDRAFT', overdraftLimit: 300 });
        await h.ledger.put({ scope: scopes[3]!, unit: 'TOKENS', allocated: 500 });
        // scopes[4] (tenant/agent:c) has no budget of its own: held at the tenant only.
        const budgetKeys = scopes.slice(0, 4).map((s) => h.keys.budget(t, 'TOKENS', s));
        // Draws (child reservations of a sub-agent) have `parent`; their body.scope is the parent's scope.
        const made: { id: string; key: string; body: Parameters<Harness['reservations']['reserve']>[0]; parent?: string }[] = [];
        const finished = new Map<string, string>();
        const charged = new Map<string, number>(); // scope → Σ charged (commits + debits)
        let seq = 0;

        const expectOnly = (e: unknown, codes: string[]) => {
          if (!(e instanceof AppError) || !codes.includes(e.code)) throw e;
        };
        const exec = async (op: Op): Promise<void> => {
          switch (op.kind) {
            case 'reserve': {
              const body = { scope: scopes[op.scope]!, unit: 'TOKENS' as const, amount: op.amount, ttlMs: op.ttl, idempotencyKey: `r${seq++}` };
              try {
                const g = await h.reservations.reserve(body);
                if ('id' in g) made.push({ id: g.id, key: body.idempotencyKey, body });
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
                if ('id' in g) made.push({ id: g.id, key: '', body: { ...m.body, amount: op.amount }, parent: m.id });
              } catch (e) {
                expectOnly(e, ['RESERVATION_EXHAUSTED', 'RESERVATION_FINALIZED', 'RESERVATION_EXPIRED', 'NESTED_DRAW']);
              }
              return;
            }
            case 'replay': {
              const m = made.filter((x) => !x.parent)[op.res % Math.max(1, made.length)];
              if (!m) return;
              const g = await h.reservations.reserve(m.body);
              assert.ok('id' in g && g.id === m.id && g.replayed === true, 'a replay answers with the original reservation');
              return;
            }
            case 'debit': {
              try {
                await h.ledger.op('debit', { scope: scopes[op.scope]!, unit: 'TOKENS', amount: op.amount, idempotencyKey: `d${seq++}` });
                for (let i = 0; i <= 3; i++) if (scopes[op.scope]!.startsWith(scopes[i]!) && (scopes[op.scope] === scopes[i] || scopes[op.scope]!.startsWith(`${scopes[i]}/`))) charged.set(scopes[i]!, (charged.get(scopes[i]!) ?? 0) + op.amount);
              } catch (e) {
                expectOnly(e, ['BUDGET_EXCEEDED', 'OVERDRAFT_LIMIT_EXCEEDED']);
              }
              return;
            }
            case 'advance':
              h.clock.now += op.ms;
              return;
            case 'sweep':
              await h.reservations.expireDue(t);
              return;
            default:
          }
          // Half the time the target is a draw (when there are any), so draws are exercised as much as parents.
          const draws = made.filter((x) => x.parent);
          const pool = op.res % 2 === 1 && draws.length > 0 ? draws : made;
          const m = pool[Math.floor(op.res / 2) % Math.max(1, pool.length)];
          if (!m) return;
          try {
            if (op.kind === 'commit') {
              const amount = Math.floor((m.body.amount * op.percent) / 100);
              const c = await h.reservations.commit(m.id, amount);
              if (!c.replayed) {
                const prev = finished.get(m.id);
                assert.ok(prev === undefined, `${m.id} committed after it was ${prev}`);
                finished.set(m.id, 'COMMITTED');
                if (m.parent) drawCommits++;
                for (const s of scopes.slice(0, 4)) if (m.body.scope === s || m.body.scope!.startsWith(`${s}/`)) charged.set(s, (charged.get(s) ?? 0) + c.charged);
              }
            } else if (op.kind === 'release') {
              const r = await h.reservations.release(m.id);
              if (!r.replayed) {
                const prev = finished.get(m.id);
                assert.ok(prev === undefined, `${m.id} released after it was ${prev}`);
                finished.set(m.id, 'RELEASED');
              }
            } else {
              await h.reservations.extend(m.id, 2000);
            }
          } catch (e) {
            expectOnly(e, [
              'RESERVATION_FINALIZED',
              'RESERVATION_EXPIRED',
              'EXTEND_LIMIT_REACHED',
              'BUDGET_EXCEEDED',
              'OVERDRAFT_LIMIT_EXCEEDED',
              'RESERVATION_EXHAUSTED',
              'RESERVATION_HAS_ACTIVE_DRAWS',
            ]);
          }
        };

        for (const batch of batches) {
          await Promise.all(batch.map(exec));
          // After every step: the identity and bounds at every scope…
          const ledgers = await Promise.all(budgetKeys.map((k) => readLedger(h.redis, k)));
          ledgers.forEach((l, i) => assert.equal(ledgerViolation(l), undefined, `${scopes[i]}: ${ledgerViolation(l)}`));
          // …each reservation in exactly one state, terminal states final, reserved = Σ ACTIVE amounts.
          const views = await Promise.all(made.map((m) => h.reservations.get(m.id)));
          views.forEach((v, i) => {
            const m = made[i]!;
            const prev = finished.get(m.id);
            if (prev) assert.equal(v.state, prev, `${m.id} left terminal state ${prev}`);
            else if (TERMINAL.has(v.state)) finished.set(m.id, v.state);
          });
          // Reserved at a scope = the current holds of the top-level reservations still holding there: ACTIVE, or
          // overdue but not yet swept (they read EXPIRED and are returned by the sweeper). A parent's hold shrinks
          // by what its draws commit; draws hold nothing at the budgets themselves.
          const raw = await Promise.all(made.map((m) => h.redis.hmget(h.keys.reservation(t, m.id), 'st', 'amt')));
          const active = new Map<string, number>();
          raw.forEach(([st, amt], i) => {
            const m = made[i]!;
            if (m.parent || st !== 'A') return;
            for (const s of scopes.slice(0, 4)) if (m.body.scope === s || m.body.scope!.startsWith(`${s}/`)) active.set(s, (active.get(s) ?? 0) + Number(amt));
          });
          // A draw never holds more than its parent can cover: Σ active draws ≤ the parent's hold.
          made.forEach((m, i) => {
            if (m.parent || raw[i]![0] !== 'A') return;
            const drawn = made.reduce((acc, d, j) => acc + (d.parent === m.id && raw[j]![0] === 'A' ? d.body.amount : 0), 0);
            assert.ok(drawn <= Number(raw[i]![1]), `${m.id}: draws hold ${drawn} > its hold ${raw[i]![1]}`);
          });
          ledgers.forEach((l, i) => {
            assert.equal(l.v, active.get(scopes[i]!) ?? 0, `${scopes[i]}: reserved equals the held amounts`);
            assert.equal(l.s + l.d, charged.get(scopes[i]!) ?? 0, `${scopes[i]}: spent + debt equals what was charged`);
          });
        }
        // Finally everything expires: nothing stays held.
        h.clock.now += 10_000_000;
        await h.reservations.expireDue(t);
        for (const k of budgetKeys) assert.equal((await readLedger(h.redis, k)).v, 0);
      }),
      { numRuns: 40, seed: 20261123, endOnFailure: true },
    );
    assert.ok(drawCommits >= 10, `draws were committed in the runs (${drawCommits})`);
  });
});
