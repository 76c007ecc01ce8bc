import { Redis } from 'ioredis';
import { budgetKeys, type BudgetKeys } from '../../src/budgets/keys.js';
import { BudgetLedger } from '../../src/budgets/ledger.js';
import { ReservationService } from '../../src/budgets/reservations.js';
import { connectRedis } from '../../src/redis/connection.js';
import { REDIS_TARGET } from '../helpers/env.js';

/** Services wired straight to Redis (no HTTP), with a clock the test moves. */
export interface Harness {
  readonly redis: Redis;
  readonly keys: BudgetKeys;
  readonly ledger: BudgetLedger;
  readonly reservations: ReservationService;
  readonly clock: { now: number };
  close(): Promise<void>;
}

export async function harness(prefix: string, clockStart = Date.UTC(2026, 10, 23, 12)): Promise<Harness> {
  const redis = await connectRedis(REDIS_TARGET, { name: 'budgets-test' });
  const keys = budgetKeys(prefix);
  const clock = { now: clockStart };
  const now = () => clock.now;
  return {
    redis,
    keys,
    clock,
    ledger: new BudgetLedger({ redis, keys, idempotencyTtlMs: 3_600_000, now }),
    reservations: new ReservationService({ redis, keys, retentionMs: 3_600_000, now }),
    async close() {
      await redis.quit();
    },
  };
}

export interface Ledger {
  a: number;
  r: number;
  v: number;
  s: number;
  d: number;
  o: number;
  /** Overage policy: R reject, A allow if available, O allow with overdraft. */
  p: string;
  /** Charged this period beyond what the overage policy allowed (recorded overrun). */
  ov: number;
}

export async function readLedger(redis: Redis, key: string): Promise<Ledger> {
  const [a, r, v, s, d, o, p, ov] = await redis.hmget(key, 'a', 'r', 'v', 's', 'd', 'o', 'p', 'ov');
  return { a: Number(a), r: Number(r), v: Number(v), s: Number(s), d: Number(d ?? 0), o: Number(o ?? 0), p: p ?? '', ov: Number(ov ?? 0) };
}

/** The invariants every scope keeps at all times. Returns a description of the first violation. */
export function ledgerViolation(l: Ledger): string | undefined {
  if (l.a !== l.r + l.v + l.s) return `identity: allocated ${l.a} != remaining ${l.r} + reserved ${l.v} + spent ${l.s}`;
  if (l.r < 0 || l.v < 0 || l.s < 0 || l.d < 0) return `negative field ${JSON.stringify(l)}`;
  if (l.s > l.a) return `spent ${l.s} exceeds allocated ${l.a}`;
  // Debt beyond the overdraft limit only as recorded overrun: a use that exceeded its reservation, charged anyway.
  if (l.d > l.o + l.ov) return `debt ${l.d} exceeds overdraft limit ${l.o} + recorded overrun ${l.ov}`;
  if (l.d > 0 && l.r > 0) return `debt ${l.d} outstanding while ${l.r} remains`;
  return undefined;
}
