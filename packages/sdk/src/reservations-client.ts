import { randomUUID } from 'node:crypto';
import type { Balance, Committed, DrawGranted, ReservationGranted, Unit } from './wire.js';
import { ApportionConnectionError, ApportionHttpError, type ApportionClient } from './client.js';
import type { ReservationBacking } from './controller.js';

/** What the reservation routes answer (their TypeBox response schemas). */
export type Reservation = ReservationGranted;
export type Draw = DrawGranted;
export type Commit = Committed;
export type BalanceRow = Balance;

export type BudgetUnit = Unit;

export interface ReserveParams {
  /** `tenant:<t>/workspace:<w>/workflow:<f>/agent:<a>` (levels may be skipped, tenant required). */
  readonly scope: string;
  readonly unit?: BudgetUnit;
  readonly amount: number;
  readonly ttlMs?: number;
  /** Default: a fresh UUID, chosen once per call and reused by its retries. Pass your own to retry across calls. */
  readonly idempotencyKey?: string;
  readonly dryRun?: boolean;
}

/** Retries of calls the server could not answer (503, connection errors, timeouts). */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  readonly attempts?: number;
  /** Delay before the first retry, doubled each time (with ±50 % jitter), at most `maxDelayMs`. Default 100 ms. */
  readonly baseDelayMs?: number;
  /** Longest delay between two retries (before jitter). Default 2000 ms. */
  readonly maxDelayMs?: number;
  /**
   * How long a commit or a release keeps retrying after its `attempts` are used up, counted from its first attempt.
   * A commit reports spend that already happened and the server charges it even after the reservation expired (late
   * spend), so a commit that gives up leaves that spend uncharged; a release that gives up leaves its tokens held
   * from everyone under the scope until the reservation expires. Both outlast a Redis restart or failover, which
   * answers 503 at once for seconds. 0: `attempts` only. Default 30000 ms.
   */
  readonly commitRetryMs?: number;
}

/**
 * Whether a failed call may have been lost rather than refused: a 503 (the budget store was unreachable or answered
 * too late), or no HTTP answer at all. A 4xx is the server's decision and is never retried.
 */
export function retryable(e: unknown): boolean {
  if (e instanceof ApportionHttpError) return e.statusCode === 503;
  // ApportionClient wraps every failed fetch (refused, reset, dropped, timed out) in ApportionConnectionError.
  if (e instanceof ApportionConnectionError) return true;
  const name = (e as { name?: string } | undefined)?.name;
  return e instanceof TypeError || name === 'TimeoutError' || name === 'AbortError';
}

/**
 * Reservation calls for orchestrators and sub-agents (any process): reserve, then commit or release.
 *
 * Every call is retried on 503 and on a lost answer, with the same idempotency key, so a retry never acts twice:
 * a reserve or draw the server refused past its deadline (a stalled store) held nothing and the retry is a fresh
 * request; one that did go through is replayed. Commit and release are idempotent by the reservation's state,
 * and extend gets a key of its own.
 */
export class ReservationsClient {
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly commitRetryMs: number;

  constructor(
    private readonly client: ApportionClient,
    retry: RetryOptions = {},
  ) {
    this.attempts = Math.max(1, retry.attempts ?? 4);
    this.baseDelayMs = retry.baseDelayMs ?? 100;
    this.maxDelayMs = retry.maxDelayMs ?? 2000;
    this.commitRetryMs = Math.max(0, retry.commitRetryMs ?? 30_000);
  }

  /** Sends, retrying what `retryable` allows: `attempts` times, and beyond them until `retryForMs` after the first. */
  private async send<T>(method: string, path: string, body?: unknown, retryForMs = 0): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.client.request<T>(method, path, body);
      } catch (e) {
        if (!retryable(e)) throw e;
        const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(attempt - 1, 30)) * (0.5 + Math.random());
        if (attempt >= this.attempts && Date.now() + delay - started > retryForMs) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  reserve(p: ReserveParams): Promise<Reservation> {
    return this.send('POST', '/v1/reservations', {
      scope: p.scope,
      unit: p.unit ?? 'TOKENS',
      amount: p.amount,
      idempotencyKey: p.idempotencyKey ?? randomUUID(),
      ...(p.ttlMs !== undefined ? { ttlMs: p.ttlMs } : {}),
      ...(p.dryRun ? { dryRun: true } : {}),
    });
  }

  /** Draws `amount` from an ACTIVE reservation's free hold (a sub-agent's share of its request's reservation). */
  draw(parent: string, amount: number, opts: { ttlMs?: number; idempotencyKey?: string; dryRun?: boolean } = {}): Promise<Draw> {
    return this.send('POST', `/v1/reservations/${encodeURIComponent(parent)}/draws`, {
      amount,
      idempotencyKey: opts.idempotencyKey ?? randomUUID(),
      ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
      ...(opts.dryRun ? { dryRun: true } : {}),
    });
  }

  /**
   * Charges what was used: always recorded (an overage as `overrun`, after expiry as `late`), exactly once. Retried
   * for `commitRetryMs` (default 30 s) when the server cannot answer, not just `attempts` times: see RetryOptions.
   */
  commit(id: string, amount: number, idempotencyKey?: string): Promise<Commit> {
    return this.send('POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, { amount, ...(idempotencyKey ? { idempotencyKey } : {}) }, this.commitRetryMs);
  }

  /** Returns the unused hold. Retried like commit (`commitRetryMs`): a release is idempotent by the reservation's state. */
  release(id: string): Promise<{ id: string; state: 'RELEASED'; released: number }> {
    return this.send('POST', `/v1/reservations/${encodeURIComponent(id)}/release`, {}, this.commitRetryMs);
  }

  extend(id: string, ttlMs?: number, idempotencyKey: string = randomUUID()): Promise<{ id: string; state: 'ACTIVE'; expiresAt: number; extensions: number }> {
    return this.send('POST', `/v1/reservations/${encodeURIComponent(id)}/extend`, { idempotencyKey, ...(ttlMs !== undefined ? { ttlMs } : {}) });
  }

  async balances(scope: string, unit?: BudgetUnit): Promise<readonly BalanceRow[]> {
    const q = `scope=${encodeURIComponent(scope)}${unit ? `&unit=${unit}` : ''}`;
    return (await this.send<{ balances: BalanceRow[] }>('GET', `/v1/balances?${q}`)).balances;
  }

  /**
   * A BudgetController backing for a sub-agent in another process: its ceiling is drawn from the parent
   * request's reservation (BudgetController.delegate() gives the parent id) instead of the budgets.
   */
  drawBacking(parent: string, opts: { ttlMs?: number } = {}): ReservationBacking {
    return {
      reserve: (amount) => this.draw(parent, amount, opts),
      commit: (id, amount) => this.commit(id, amount),
      release: (id) => this.release(id),
    };
  }

  /** A BudgetController backing that reserves the request ceiling at `scope` (TOKENS). */
  backing(scope: string, opts: { ttlMs?: number } = {}): ReservationBacking {
    return {
      reserve: (amount) => this.reserve({ scope, amount, ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}) }),
      commit: (id, amount) => this.commit(id, amount),
      release: (id) => this.release(id),
    };
  }
}
