import type { Redis } from 'ioredis';
import { splitBudgetKey } from './alerts.js';
import type { BudgetKeys } from './keys.js';

/**
 * The budgets domain's read-only overview, for the console (which never reads budget keys itself): budget tenants,
 * live reservations, recent threshold alerts and recent overrun events. Each read is bounded.
 */

export interface LiveReservation {
  readonly tenant: string;
  readonly id: string;
  readonly scope: string;
  readonly unit: string;
  readonly amount: number;
  readonly expiresAt: number;
  readonly parent?: string;
}

/** A scope's consumption (spent + debt) crossed 50, 80 or 100 % of its allocation. */
export interface AlertEntry {
  readonly kind: 'threshold';
  readonly tenant: string;
  readonly scope: string;
  readonly unit: string;
  readonly threshold: number;
  readonly used: number;
  readonly allocated: number;
  readonly at: number;
}

/** A commit charged a scope `overrun` beyond what its overage policy allowed (`used`: the consumption after it). */
export interface OverrunEntry {
  readonly kind: 'overrun';
  readonly tenant: string;
  readonly scope: string;
  readonly unit: string;
  readonly overrun: number;
  readonly used: number;
  readonly allocated: number;
  /** The committed reservation's id. */
  readonly reservation?: string;
  readonly at: number;
}

export interface BudgetOverview {
  readonly tenants: string[];
  readonly reservations: LiveReservation[];
  /** Threshold alerts only, newest first: overrun events never take their places. */
  readonly alerts: AlertEntry[];
  /** Overrun events, newest first. */
  readonly overruns: OverrunEntry[];
  /** True when a listing was cut at its limit. */
  readonly truncated: boolean;
}

const pairs = (flat: readonly string[]): Record<string, string> => {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
  return o;
};

/**
 * Tenants with budgets, their ACTIVE reservations (from each tenant's deadline set, soonest first), their newest
 * threshold alerts and their newest overrun events. Reads at most `limit` tenants, reservations per tenant, and
 * alerts and overruns per tenant. `only`: the one tenant a tenant key is confined to (its own budgets, or none);
 * undefined = every tenant.
 */
export async function budgetOverview(redis: Redis, keys: BudgetKeys, limit = 100, only?: string): Promise<BudgetOverview> {
  const every = (await redis.smembers(keys.tenants())).sort();
  const all = only === undefined ? every : every.filter((t) => t === only);
  // A tenant without budgets may be listed (a budget PUT lists its tenant before its script runs, and the script
  // may never have run): skipped. Checked in batches, up to one tenant past the limit.
  const budgeted: string[] = [];
  for (let i = 0; i < all.length && budgeted.length <= limit; i += limit + 1) {
    const batch = all.slice(i, i + limit + 1);
    const sizes = await Promise.all(batch.map((t) => redis.scard(keys.index(t))));
    batch.forEach((t, j) => {
      if (sizes[j]! > 0) budgeted.push(t);
    });
  }
  const tenants = budgeted.slice(0, limit);
  let truncated = budgeted.length > limit;
  const reservations: LiveReservation[] = [];
  const alerts: AlertEntry[] = [];
  const overruns: OverrunEntry[] = [];
  const now = Date.now();
  for (const tenant of tenants) {
    const [resKeys, stream, overrunStream] = await Promise.all([
      redis.zrangebyscore(keys.deadlines(tenant), now, '+inf', 'LIMIT', 0, limit + 1),
      redis.xrevrange(keys.alerts(tenant), '+', '-', 'COUNT', limit),
      redis.xrevrange(keys.overruns(tenant), '+', '-', 'COUNT', limit),
    ]);
    if (resKeys.length > limit) truncated = true;
    const rows = await Promise.all(resKeys.slice(0, limit).map((k) => redis.hgetall(k).then((h) => ({ k, h }))));
    const idPrefix = `${keys.tag(tenant)}:r:`;
    for (const { k, h } of rows) {
      if (h.st !== 'A') continue;
      reservations.push({
        tenant,
        id: k.slice(idPrefix.length),
        scope: h.sc ?? '',
        unit: h.u ?? '',
        amount: Number(h.amt ?? 0),
        expiresAt: Number(h.exp ?? 0),
        ...(h.par ? { parent: h.par.slice(idPrefix.length) } : {}),
      });
    }
    // Overrun events were written to the alerts stream by earlier versions: they are read as overruns there too.
    for (const [, flat] of [...stream, ...overrunStream]) {
      const e = pairs(flat);
      if (!e.key) continue;
      const { unit, scope } = splitBudgetKey(e.key, keys.budgetPrefix(tenant));
      const base = { tenant, scope, unit, used: Number(e.used), allocated: Number(e.allocated), at: Number(e.at) };
      if (e.level === 'overrun') {
        const reservation = e.reservation?.startsWith(idPrefix) ? e.reservation.slice(idPrefix.length) : (e.reservation ?? '');
        overruns.push({ kind: 'overrun', ...base, overrun: Number(e.overrun), ...(reservation ? { reservation } : {}) });
      } else {
        alerts.push({ kind: 'threshold', ...base, threshold: Number(e.level) });
      }
    }
  }
  alerts.sort((a, b) => b.at - a.at);
  overruns.sort((a, b) => b.at - a.at);
  return { tenants, reservations, alerts: alerts.slice(0, limit), overruns: overruns.slice(0, limit), truncated };
}
