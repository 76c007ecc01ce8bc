import { randomUUID } from 'node:crypto';
import type { Balance, Committed, DrawGranted, ReservationGranted, Unit } from './wire.js';
import type { ApportionClient } from './client.js';
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
  /** Default: a fresh UUID. Pass your own to make retries after a lost response safe. */
  readonly idempotencyKey?: string;
  readonly dryRun?: boolean;
}

/** Reservation calls for orchestrators and sub-agents (any process): reserve, then commit or release. */
export class ReservationsClient {
  constructor(private readonly client: ApportionClient) {}

  reserve(p: ReserveParams): Promise<Reservation> {
    return this.client.request('POST', '/v1/reservations', {
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
    return this.client.request('POST', `/v1/reservations/${encodeURIComponent(parent)}/draws`, {
      amount,
      idempotencyKey: opts.idempotencyKey ?? randomUUID(),
      ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
      ...(opts.dryRun ? { dryRun: true } : {}),
    });
  }

  commit(id: string, amount: number, idempotencyKey?: string): Promise<Commit> {
    return this.client.request('POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, { amount, ...(idempotencyKey ? { idempotencyKey } : {}) });
  }

  release(id: string): Promise<{ id: string; state: 'RELEASED'; released: number }> {
    return this.client.request('POST', `/v1/reservations/${encodeURIComponent(id)}/release`, {});
  }

  extend(id: string, ttlMs?: number): Promise<{ id: string; state: 'ACTIVE'; expiresAt: number; extensions: number }> {
    return this.client.request('POST', `/v1/reservations/${encodeURIComponent(id)}/extend`, ttlMs !== undefined ? { ttlMs } : {});
  }

  async balances(scope: string, unit?: BudgetUnit): Promise<readonly BalanceRow[]> {
    const q = `scope=${encodeURIComponent(scope)}${unit ? `&unit=${unit}` : ''}`;
    return (await this.client.request<{ balances: BalanceRow[] }>('GET', `/v1/balances?${q}`)).balances;
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
