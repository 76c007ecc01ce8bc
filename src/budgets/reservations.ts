import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError } from '../errors/app-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { parseAlerts, splitBudgetKey, type AlertHandler } from './alerts.js';
import { periodKeys } from './clock.js';
import type { BudgetKeys } from './keys.js';
import { LEDGER_MAX } from './schema.js';
import type {
  Committed,
  DrawBody,
  DrawDryRun,
  DrawGranted,
  DryRunAnswer as DryRun,
  Extended,
  Released,
  ReservationGranted as Granted,
  ReservationView as ReservationRecord,
  ReserveBody,
  State,
  Unit,
} from './schema.js';
import { parseScope, scopeOf, ScopeError, type Scope } from './scope.js';
import type { ScriptReply } from '../redis/scripts.js';
import { run, STORE_TIMEOUT_MS, storeFailure } from './store.js';
import { namespaced, splitNamespace } from '../http/namespace.js';
import { RedisClock } from '../redis/clock.js';

/** Options of the reservation service. */
export interface ReservationOptions {
  readonly redis: Redis;
  readonly keys: BudgetKeys;
  /** Retention of idempotency records and finished reservations, ms. */
  readonly retentionMs: number;
  /** TTL of a reservation when the request gives none, ms. Default 60000. */
  readonly defaultTtlMs?: number;
  /** How many times one reservation may be extended. Default 10. */
  readonly maxExtends?: number;
  /** Clock (tests move it across day boundaries). Default Date.now. */
  readonly now?: () => number;
  readonly onAlerts?: AlertHandler;
  /** A script that takes longer is answered 503 REDIS_UNAVAILABLE (fail closed). Default 2000 ms. */
  readonly timeoutMs?: number;
  /**
   * Wall clock for request deadlines, compared in the scripts with the Redis server's clock (`TIME`): a reserve or
   * draw that reaches Redis after its caller was answered 503 does nothing. Default Date.now. (`now` is the
   * clock of the ledger, which tests move; this one must stay real.)
   */
  readonly wallClock?: () => number;
  /**
   * How long before the caller's 503 the scripts stop granting: absorbs clock skew between this host and Redis.
   * Default min(250, timeoutMs / 4) ms.
   */
  readonly deadlineMarginMs?: number;
  /**
   * Called with each new estimate of Redis's clock minus the wall clock, ms (positive: this host is behind Redis),
   * and whether it is larger than the deadline margin (an unsynced host clock).
   */
  readonly onClockOffset?: (offsetMs: number, large: boolean) => void;
  /**
   * The process's estimate of Redis's clock (shared with the decision store and outcome intake); when given,
   * `onClockOffset` is its own business. Default: one of this service's own (maxRttMs = the deadline margin).
   */
  readonly clock?: RedisClock;
  /** Called once per operation with its result label (ok, replay, or the denial code). */
  readonly onResult?: (op: 'reserve' | 'draw' | 'commit' | 'release' | 'extend', result: string) => void;
}

/** Reservations whose related keys (see relatedCall) one process remembers; the oldest are forgotten first. */
const RELATED_CACHE = 20_000;

const STATES: Record<string, State> = { A: 'ACTIVE', C: 'COMMITTED', R: 'RELEASED', E: 'EXPIRED' };
// Reservation ids: `<tenant>~<122 random bits>` (a v4 UUID without dashes, from node's pooled CSPRNG): the tenant
// routes the id to its slot; the rest cannot be derived from any other id, so ids are not guessable across tenants.
const newReservationId = (tenant: string): string => namespaced(tenant, randomUUID().replaceAll('-', ''));
// A dry run never stores: it checks an idempotency key no real request uses, so it never replays or conflicts.
const DRY_RUN_KEY = '\u0000dry';

export function tenantOf(id: string): string {
  const { tenant } = splitNamespace(id);
  if (tenant === null) throw new AppError('RESERVATION_NOT_FOUND', `params/id: "${id}" is not a reservation id`);
  return tenant;
}

export function resolveScope(body: { scope?: string | undefined; subject?: Parameters<typeof scopeOf>[0] | undefined }, where = 'body'): Scope {
  try {
    if (body.scope !== undefined && body.subject !== undefined) throw new ScopeError('give either scope or subject, not both');
    if (body.scope !== undefined) return parseScope(body.scope);
    if (body.subject !== undefined) return scopeOf(body.subject);
    throw new ScopeError('scope (or subject) is required');
  } catch (e) {
    if (e instanceof ScopeError) throw new AppError('INVALID_SCOPE', `${where}/${body.subject && !body.scope ? 'subject' : 'scope'}: ${e.message}`);
    throw e;
  }
}

/**
 * Reservations against hierarchical budgets: reserve / commit / release / extend, each one Lua call (one
 * round trip, one slot). See docs/budgets.md for the protocol.
 */
export class ReservationService {
  private readonly defaultTtlMs: number;
  private readonly maxExtends: number;
  private readonly now: () => number;
  private readonly wall: () => number;
  private readonly timeoutMs: number;
  private readonly marginMs: number;
  /** Redis's clock as this host estimates it (deadlines are sent on Redis's clock). */
  private readonly clock: RedisClock;
  /**
   * Reservation key → its related keys (budget hashes, parent), immutable once it exists: commit, release, extend
   * and the sweeper declare them in their script call (Redis Cluster), known here from the grant or learnt from
   * the script's "K" answer.
   */
  private readonly related = new Map<string, readonly string[]>();

  constructor(private readonly o: ReservationOptions) {
    this.defaultTtlMs = o.defaultTtlMs ?? 60_000;
    this.maxExtends = o.maxExtends ?? 10;
    this.now = o.now ?? Date.now;
    this.wall = o.wallClock ?? Date.now;
    this.timeoutMs = o.timeoutMs ?? STORE_TIMEOUT_MS;
    this.marginMs = o.deadlineMarginMs ?? Math.min(250, Math.floor(this.timeoutMs / 4));
    this.clock = o.clock ?? new RedisClock({ redis: o.redis, wall: this.wall, maxRttMs: this.marginMs, ...(o.onClockOffset ? { onOffset: o.onClockOffset } : {}) });
  }

  private remember(rk: string, keys: readonly string[]): void {
    this.related.delete(rk);
    this.related.set(rk, keys);
    if (this.related.size > RELATED_CACHE) this.related.delete(this.related.keys().next().value!);
  }

  /**
   * Runs a script on reservation `rk` that may touch its related keys (reservation-commit/release/extend): called
   * with the keys this process knows; when the script answers "K|<keys>" (it touched nothing) it is called again
   * with those. `answerOf` picks the answer string out of the script's reply.
   */
  private async relatedCall<N extends 'reservationCommit' | 'reservationRelease' | 'reservationExtend'>(
    name: N,
    rk: string,
    fixed: readonly string[],
    idem: string | undefined,
    args: readonly (string | number)[],
    answerOf: (out: ScriptReply<N>) => string,
  ): Promise<ScriptReply<N>> {
    let extra = this.related.get(rk) ?? [];
    for (let attempt = 0; ; attempt++) {
      const keys = idem === undefined ? [...fixed, ...extra] : [...fixed, idem, ...extra];
      const out = await run(this.o.redis, name, keys, [...args, extra.length], this.timeoutMs);
      const answer = answerOf(out);
      if (!answer.startsWith('K|')) return out;
      if (attempt > 0) throw new Error(`${name}: related keys of ${rk} changed between two calls`);
      extra = answer.slice(2).split(' ').filter((k) => k !== '');
      this.remember(rk, extra);
    }
  }

  /** The current estimate of Redis's clock minus this host's wall clock, ms. */
  get clockOffsetMs(): number {
    return this.clock.offsetMs;
  }

  /** Estimates the offset of Redis's clock (`TIME`) from the wall clock again (RedisClock.sync). */
  syncClock(): Promise<number> {
    return this.clock.sync();
  }

  /**
   * The instant after which a grant must not happen, on Redis's clock (the script compares it with `TIME`): the
   * caller is answered 503 at `timeoutMs`. The wall clock plus the estimated offset, so a host clock behind or
   * ahead of Redis's neither refuses every request nor lets a late script grant.
   */
  private deadline(): number {
    return this.clock.now() + this.timeoutMs - this.marginMs;
  }

  private late(op: 'reserve' | 'draw'): AppError {
    // A skew that appeared since the last estimate would refuse every request: estimate again at once.
    this.clock.resyncSoon(1000);
    return lateForDeadline(op, this.o.onResult, this.clock.offsetMs, this.marginMs);
  }

  async reserve(body: ReserveBody): Promise<Granted | DryRun> {
    const scope = resolveScope(body);
    const { keys } = this.o;
    const t = scope.tenant;
    const ttl = body.ttlMs ?? this.defaultTtlMs;
    const dry = body.dryRun === true;
    const now = this.now();
    const pk = periodKeys(now);
    const id = newReservationId(t);
    const chain = scope.chain;
    const ks: string[] = [
      keys.idempotency(t, dry ? DRY_RUN_KEY : body.idempotencyKey),
      keys.reservation(t, id),
      keys.deadlines(t),
    ];
    for (const s of chain) ks.push(keys.budget(t, body.unit, s));
    const fp = `R|${scope.path}|${body.unit}|${body.amount}|${ttl}`;
    const answer = await run(
      this.o.redis,
      'reservationReserve',
      ks,
      [fp, this.o.retentionMs, id, body.amount, ttl, now, dry ? '1' : '0', pk.day, pk.month, scope.path, body.unit, this.deadline()],
      this.timeoutMs,
    );
    if (answer === 'T') throw this.late('reserve');
    const replayed = answer.charCodeAt(0) === 82; /* R */
    const a = replayed ? answer.slice(1) : answer;
    const parts = a.split('|');
    switch (parts[0]) {
      case 'G': {
        const mask = parts[3]!;
        const scopes: string[] = [];
        for (let i = 0; i < mask.length; i++) if (mask.charCodeAt(i) === 49) scopes.push(chain[i]!);
        this.o.onResult?.('reserve', replayed ? 'replay' : 'ok');
        if (!dry) this.remember(keys.reservation(t, parts[1]!), ks.slice(3).filter((_, i) => mask.charCodeAt(i) === 49));
        if (dry) return { dryRun: true, allowed: true, scope: scope.path, unit: body.unit, amount: body.amount, scopes };
        const granted: Granted = { id: parts[1]!, state: 'ACTIVE', scope: scope.path, unit: body.unit, amount: body.amount, scopes, expiresAt: Number(parts[2]) };
        return replayed ? { ...granted, replayed: true } : granted;
      }
      case 'D': {
        const code = parts[1] as ErrorCode;
        this.o.onResult?.('reserve', code);
        const idx = Number(parts[2]);
        if (code === 'BUDGET_NOT_FOUND') {
          throw new AppError(code, `body/scope: no ${body.unit} budget at "${scope.path}" or any of its ancestors`, { scope: scope.path, unit: body.unit });
        }
        const at = chain[idx]!;
        const remaining = Number(parts[3]);
        throw new AppError(code, denialMessage(code, at, body.amount, remaining), {
          scope: at,
          unit: body.unit,
          requested: body.amount,
          remaining,
          ...(replayed ? { replayed: true } : {}),
        });
      }
      default:
        this.o.onResult?.('reserve', 'IDEMPOTENCY_KEY_REUSED');
        throw new AppError('IDEMPOTENCY_KEY_REUSED', `body/idempotencyKey: "${body.idempotencyKey}" was used for a different reservation request`);
    }
  }

  /**
   * Draws `amount` from an ACTIVE reservation's free hold: a child reservation for a sub-agent (possibly in
   * another process) that shares the parent's request budget. Commit, release and extend take the draw's id.
   */
  async draw(parentId: string, body: DrawBody): Promise<DrawGranted | DrawDryRun> {
    const t = tenantOf(parentId);
    const { keys } = this.o;
    const ttl = body.ttlMs ?? this.defaultTtlMs;
    const dry = body.dryRun === true;
    const id = newReservationId(t);
    const ks = [keys.idempotency(t, dry ? DRY_RUN_KEY : body.idempotencyKey), keys.reservation(t, id), keys.deadlines(t), keys.reservation(t, parentId)];
    const answer = await run(
      this.o.redis,
      'reservationDraw',
      ks,
      [`W|${parentId}|${body.amount}|${ttl}`, this.o.retentionMs, id, body.amount, ttl, this.now(), dry ? '1' : '0', this.deadline()],
      this.timeoutMs,
    );
    if (answer === 'T') throw this.late('draw');
    const replayed = answer.charCodeAt(0) === 82; /* R */
    const parts = (replayed ? answer.slice(1) : answer).split('|');
    switch (parts[0]) {
      case 'G': {
        this.o.onResult?.('draw', replayed ? 'replay' : 'ok');
        const parentRelated = this.related.get(ks[3]!);
        if (!dry && parentRelated) this.remember(keys.reservation(t, parts[1]!), [...parentRelated, ks[3]!]);
        if (dry) return { dryRun: true, allowed: true, parent: parentId, amount: body.amount };
        const g: DrawGranted = { id: parts[1]!, state: 'ACTIVE', parent: parentId, scope: parts[3]!, unit: parts[4] as Unit, amount: body.amount, expiresAt: Number(parts[2]) };
        return replayed ? { ...g, replayed: true } : g;
      }
      case 'D': {
        this.o.onResult?.('draw', 'RESERVATION_EXHAUSTED');
        const available = Number(parts[2]);
        throw new AppError('RESERVATION_EXHAUSTED', `body/amount: ${body.amount} exceeds the ${available} reservation "${parentId}" still holds free`, {
          id: parentId,
          requested: body.amount,
          available,
        });
      }
      case 'P':
        this.o.onResult?.('draw', 'NESTED_DRAW');
        throw new AppError('NESTED_DRAW', `params/id: "${parentId}" is itself a draw; draw from its parent`, { id: parentId });
      default:
        return this.finishedOrMissing('draw', parentId, parts[0]!, parts[1], body.idempotencyKey);
    }
  }

  /**
   * Charges what the reservation's holder actually used. Always recorded exactly once: above the hold the overage
   * is charged too (`overrun` > 0 when no policy allowed it, with an alert), and after expiry the use is charged
   * as late spend (`late: true`). Refused only for a RELEASED reservation, a COMMITTED one with another amount,
   * or a parent whose draws are still ACTIVE.
   */
  async commit(id: string, amount: number, idempotencyKey?: string): Promise<Committed> {
    const t = tenantOf(id);
    const { keys } = this.o;
    const now = this.now();
    const pk = periodKeys(now);
    const rk = keys.reservation(t, id);
    const idem = idempotencyKey !== undefined ? keys.idempotency(t, idempotencyKey) : undefined;
    const args = [`C|${id}|${amount}`, this.o.retentionMs, amount, now, pk.day, pk.month];
    const out = await this.relatedCall('reservationCommit', rk, [rk, keys.deadlines(t), keys.alerts(t), keys.overruns(t)], idem, args, (o) => o[0]!);
    const answer = out[0]!;
    const replayed = answer.charCodeAt(0) === 82 && answer.charCodeAt(1) === 67; /* RC */
    const parts = (replayed ? answer.slice(1) : answer).split('|');
    if (out.length > 1 && this.o.onAlerts) this.o.onAlerts(parseAlerts(out, 1, keys.budgetPrefix(t), t, now, id));
    switch (parts[0]) {
      case 'C': {
        this.o.onResult?.('commit', replayed ? 'replay' : parts[4] !== undefined && parts[4] !== '0' ? 'overrun' : 'ok');
        this.related.delete(rk);
        const r = committedView(id, parts);
        return replayed ? { ...r, replayed: true } : r;
      }
      case 'D': {
        if (parts[1] === 'LEDGER_LIMIT_EXCEEDED') {
          this.o.onResult?.('commit', 'LEDGER_LIMIT_EXCEEDED');
          const { scope } = splitBudgetKey(parts[2]!, keys.budgetPrefix(t));
          const used = Number(parts[3]);
          throw new AppError(
            'LEDGER_LIMIT_EXCEEDED',
            `body/amount: ${amount} would take spent + debt at scope "${scope}" (now ${used}) past ${LEDGER_MAX}, the largest amount a budget holds; nothing was charged (reset the scope, then commit again)`,
            { id, scope, requested: amount, used, limit: LEDGER_MAX },
          );
        }
        this.o.onResult?.('commit', 'RESERVATION_HAS_ACTIVE_DRAWS');
        throw activeDraws(id, Number(parts[3]));
      }
      default:
        return this.finishedOrMissing('commit', id, parts[0]!, parts[1], idempotencyKey);
    }
  }

  async release(id: string, idempotencyKey?: string): Promise<Released> {
    const t = tenantOf(id);
    const { keys } = this.o;
    const rk = keys.reservation(t, id);
    const idem = idempotencyKey !== undefined ? keys.idempotency(t, idempotencyKey) : undefined;
    const answer = await this.relatedCall('reservationRelease', rk, [rk, keys.deadlines(t)], idem, [`L|${id}`, this.o.retentionMs, this.now()], (a) => a);
    const replayed = answer.charCodeAt(0) === 82 && answer.charCodeAt(1) === 76; /* RL */
    const parts = (replayed ? answer.slice(1) : answer).split('|');
    if (parts[0] === 'L') {
      this.o.onResult?.('release', replayed ? 'replay' : 'ok');
      this.related.delete(rk);
      const r: Released = { id, state: 'RELEASED', released: Number(parts[1]) };
      return replayed ? { ...r, replayed: true } : r;
    }
    if (parts[0] === 'D') {
      this.o.onResult?.('release', 'RESERVATION_HAS_ACTIVE_DRAWS');
      throw activeDraws(id, Number(parts[1]));
    }
    return this.finishedOrMissing('release', id, parts[0]!, parts[1], idempotencyKey);
  }

  async extend(id: string, ttlMs?: number, idempotencyKey?: string): Promise<Extended> {
    const t = tenantOf(id);
    const { keys } = this.o;
    const ttl = ttlMs ?? this.defaultTtlMs;
    const rk = keys.reservation(t, id);
    const idem = idempotencyKey !== undefined ? keys.idempotency(t, idempotencyKey) : undefined;
    const answer = await this.relatedCall('reservationExtend', rk, [rk, keys.deadlines(t)], idem, [`X|${id}|${ttl}`, this.o.retentionMs, this.now(), ttl, this.maxExtends], (a) => a);
    const replayed = answer.charCodeAt(0) === 82 && answer.charCodeAt(1) === 88; /* RX */
    const parts = (replayed ? answer.slice(1) : answer).split('|');
    if (parts[0] === 'X') {
      this.o.onResult?.('extend', replayed ? 'replay' : 'ok');
      const r: Extended = { id, state: 'ACTIVE', expiresAt: Number(parts[1]), extensions: Number(parts[2]) };
      return replayed ? { ...r, replayed: true } : r;
    }
    if (parts[0] === 'D') {
      this.o.onResult?.('extend', 'BUDGET_FROZEN');
      const { scope } = splitBudgetKey(parts[2]!, keys.budgetPrefix(t));
      throw new AppError('BUDGET_FROZEN', `params/id: reservation "${id}" is held at scope "${scope}", which is frozen; it cannot be extended`, { id, scope });
    }
    if (parts[0] === 'L') {
      this.o.onResult?.('extend', 'EXTEND_LIMIT_REACHED');
      throw new AppError('EXTEND_LIMIT_REACHED', `params/id: reservation "${id}" was already extended ${this.maxExtends} times`, { id });
    }
    return this.finishedOrMissing('extend', id, parts[0]!, parts[1], idempotencyKey);
  }

  async get(id: string): Promise<ReservationRecord> {
    const t = tenantOf(id);
    let h: Record<string, string>;
    try {
      h = await this.o.redis.hgetall(this.o.keys.reservation(t, id));
    } catch (e) {
      return storeFailure(e);
    }
    if (!h.st) throw new AppError('RESERVATION_NOT_FOUND', `params/id: no reservation "${id}"`);
    let state = STATES[h.st]!;
    // An overdue reservation the sweeper has not reached yet is already EXPIRED for every purpose.
    if (state === 'ACTIVE' && Number(h.exp) <= this.now()) state = 'EXPIRED';
    const charged = h.ca ? Number(h.ca.split('|')[2]) : undefined;
    return {
      id,
      state,
      scope: h.sc ?? '',
      unit: (h.u ?? 'TOKENS') as Unit,
      amount: Number(h.amt),
      expiresAt: Number(h.exp),
      extensions: Number(h.x ?? 0),
      ...(charged !== undefined ? { charged } : {}),
      ...(h.par ? { parent: h.par.slice(h.par.lastIndexOf(':') + 1) } : {}),
      ...(h.ch && Number(h.ch) > 0 ? { drawn: Number(h.ch) } : {}),
    };
  }

  /**
   * Expires the overdue reservations of one tenant; returns how many. Per batch: the due reservations and their
   * related keys are read first, then one script call declaring all of them expires those still due and ACTIVE.
   */
  async expireDue(tenant: string, batch = 500): Promise<number> {
    const redis = this.o.redis;
    const dl = this.o.keys.deadlines(tenant);
    let total = 0;
    for (;;) {
      const now = this.now();
      let due: string[];
      let rows: (string | null)[][];
      try {
        due = await redis.zrangebyscore(dl, '-inf', now, 'LIMIT', 0, batch);
        rows = await Promise.all(due.map((rk) => redis.hmget(rk, 'ks', 'pks', 'par')));
      } catch (e) {
        return storeFailure(e);
      }
      if (due.length === 0) return total;
      const related = new Set<string>();
      for (const row of rows) for (const v of row) for (const k of (v ?? '').split(' ')) if (k !== '') related.add(k);
      const [n, handled] = await run(redis, 'reservationExpire', [dl, ...due, ...related], [now, due.length, this.o.retentionMs], this.timeoutMs);
      total += n;
      if (due.length < batch || handled === 0) return total;
    }
  }

  private finishedOrMissing(op: 'draw' | 'commit' | 'release' | 'extend', id: string, tag: string, state: string | undefined, key?: string): never {
    if (tag === 'N') {
      this.o.onResult?.(op, 'RESERVATION_NOT_FOUND');
      throw new AppError('RESERVATION_NOT_FOUND', `params/id: no reservation "${id}" (unknown, or finished longer ago than the retention)`, { id });
    }
    if (tag === 'M') {
      this.o.onResult?.(op, 'IDEMPOTENCY_KEY_REUSED');
      throw new AppError('IDEMPOTENCY_KEY_REUSED', `body/idempotencyKey: "${key}" was used for a different request`, { id });
    }
    const s = STATES[state ?? ''] ?? 'EXPIRED';
    if (s === 'EXPIRED' && op !== 'release') {
      this.o.onResult?.(op, 'RESERVATION_EXPIRED');
      throw new AppError('RESERVATION_EXPIRED', `params/id: reservation "${id}" expired; its amount went back to the budgets`, { id, state: s });
    }
    this.o.onResult?.(op, 'RESERVATION_FINALIZED');
    throw new AppError(
      'RESERVATION_FINALIZED',
      `params/id: reservation "${id}" is already ${s}${op === 'commit' && s === 'COMMITTED' ? ' with a different amount' : ''}`,
      { id, state: s },
    );
  }
}

/** A committed answer "C|reserved|charged|debt|overrun|released|late" (records written before overruns: 4 fields). */
function committedView(id: string, parts: readonly string[]): Committed {
  const reserved = Number(parts[1]);
  const charged = Number(parts[2]);
  return {
    id,
    state: 'COMMITTED',
    reserved,
    charged,
    released: parts[5] !== undefined ? Number(parts[5]) : Math.max(0, reserved - charged),
    debt: Number(parts[3]),
    overrun: Number(parts[4] ?? 0),
    ...(parts[6] === '1' ? { late: true } : {}),
  };
}

/** The script ran after the request's deadline (the store had stalled): it did nothing; the caller may retry. */
function lateForDeadline(op: 'reserve' | 'draw', onResult: ReservationOptions['onResult'], offsetMs: number, marginMs: number): AppError {
  onResult?.(op, 'REDIS_UNAVAILABLE');
  const skew =
    Math.abs(offsetMs) > marginMs ? ` (this API host's clock is ${Math.abs(offsetMs)} ms ${offsetMs > 0 ? 'behind' : 'ahead of'} the Redis server's; deadlines are corrected for it, but keep the clocks NTP-synced)` : '';
  return new AppError(
    'REDIS_UNAVAILABLE',
    `budget store answered after the request's deadline${skew}; nothing was ${op === 'reserve' ? 'reserved' : 'drawn'}; retry with the same idempotency key`,
  );
}

function activeDraws(id: string, drawn: number): AppError {
  return new AppError('RESERVATION_HAS_ACTIVE_DRAWS', `params/id: reservation "${id}" has active draws holding ${drawn}; commit or release them first`, { id, drawn });
}

function denialMessage(code: ErrorCode, scope: string, amount: number, remaining: number): string {
  if (code === 'BUDGET_FROZEN') return `body/scope: scope "${scope}" is frozen`;
  return `body/amount: ${amount} exceeds the remaining ${remaining} at scope "${scope}"`;
}


