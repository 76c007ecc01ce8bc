/**
 * Response shapes of the reservation routes, under the server's names. The server declares them as TypeBox
 * schemas (src/budgets/schema.ts), which the SDK cannot import without the server; test/sdk/wire-types.ts checks at
 * compile time that the server's types stay assignable to these.
 */

export type Unit = 'TOKENS' | 'USD_MICROCENTS';

/** POST /v1/reservations. */
export interface ReservationGranted {
  readonly id: string;
  readonly state: 'ACTIVE';
  readonly scope: string;
  readonly unit: Unit;
  readonly amount: number;
  /** Budgeted scopes the amount is held at, root first. */
  readonly scopes: readonly string[];
  /** Deadline, ms since the epoch. */
  readonly expiresAt: number;
  readonly replayed?: boolean;
}

/** POST /v1/reservations/:id/draws. */
export interface DrawGranted {
  readonly id: string;
  readonly state: 'ACTIVE';
  /** The reservation this draw takes its amount from. */
  readonly parent: string;
  readonly scope: string;
  readonly unit: Unit;
  readonly amount: number;
  readonly expiresAt: number;
  readonly replayed?: boolean;
}

/** POST /v1/reservations/:id/commit. */
export interface Committed {
  readonly id: string;
  readonly state: 'COMMITTED';
  readonly reserved: number;
  readonly charged: number;
  /** Reserved but not charged: returned to the scopes. */
  readonly released: number;
  /** Largest overdraft this commit added at any scope. */
  readonly debt: number;
  /** Largest part of the charge that a held scope's overage policy did not allow (charged all the same, and alerted); 0 when none. */
  readonly overrun: number;
  /** The reservation had expired: the whole amount was charged as new spend. */
  readonly late?: true;
  readonly replayed?: boolean;
}

/** One row of GET /v1/balances. */
export interface Balance {
  readonly scope: string;
  readonly unit: Unit;
  readonly allocated: number;
  readonly remaining: number;
  readonly reserved: number;
  readonly spent: number;
  readonly debt: number;
  readonly frozen: boolean;
  readonly overagePolicy: 'REJECT' | 'ALLOW_IF_AVAILABLE' | 'ALLOW_WITH_OVERDRAFT';
  readonly overdraftLimit: number;
  readonly period?: 'day' | 'month';
  /** Charged this period beyond what the overage policy allowed (commits are never refused for an overage). */
  readonly overrun?: number;
}
