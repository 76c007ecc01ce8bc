import type { Redis } from 'ioredis';
import { masters } from '../redis/connection.js';
import { splitBudgetKey } from '../budgets/alerts.js';
import type { BudgetKeys } from '../budgets/keys.js';

/**
 * Read-only listings the console needs and the domain APIs do not offer as lists: budget tenants, live
 * reservations, recent threshold alerts, and session ids with cost traces. Each read is bounded.
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

export interface AlertEntry {
  readonly tenant: string;
  readonly scope: string;
  readonly unit: string;
  readonly threshold: number;
  readonly used: number;
  readonly allocated: number;
  readonly at: number;
}

export interface BudgetOverview {
  readonly tenants: string[];
  readonly reservations: LiveReservation[];
  readonly alerts: AlertEntry[];
  /** True when a listing was cut at its limit. */
  readonly truncated: boolean;
}

const pairs = (flat: readonly string[]): Record<string, string> => {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
  return o;
};

/**
 * Tenants with budgets, their ACTIVE reservations (from each tenant's deadline set, soonest first) and
 * their newest alerts. Reads at most `limit` tenants, reservations per tenant and alerts per tenant.
 * `only`: the one tenant a tenant key is confined to (its own budgets, or none); undefined = every tenant.
 */
export async function budgetOverview(redis: Redis, keys: BudgetKeys, limit = 100, only?: string): Promise<BudgetOverview> {
  const every = (await redis.smembers(keys.tenants())).sort();
  const all = only === undefined ? every : every.filter((t) => t === only);
  const tenants = all.slice(0, limit);
  let truncated = all.length > limit;
  const reservations: LiveReservation[] = [];
  const alerts: AlertEntry[] = [];
  const now = Date.now();
  for (const tenant of tenants) {
    const [resKeys, stream] = await Promise.all([
      redis.zrangebyscore(keys.deadlines(tenant), now, '+inf', 'LIMIT', 0, limit + 1),
      redis.xrevrange(keys.alerts(tenant), '+', '-', 'COUNT', limit),
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
    for (const [, flat] of stream) {
      const e = pairs(flat);
      if (!e.key) continue;
      const { unit, scope } = splitBudgetKey(e.key, keys.budgetPrefix(tenant));
      alerts.push({ tenant, scope, unit, threshold: Number(e.level), used: Number(e.used), allocated: Number(e.allocated), at: Number(e.at) });
    }
  }
  alerts.sort((a, b) => b.at - a.at);
  return { tenants, reservations, alerts: alerts.slice(0, limit), truncated };
}

/** A literal for a SCAN MATCH pattern. */
const globLiteral = (s: string) => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/**
 * Session ids that have cost traces. There is no time index of sessions, so this walks the keyspace with
 * SCAN (bounded by `scanBudget` keys examined) and returns up to `limit` ids, named sessions before the
 * `trace-…` ids given to traces that named no session.
 * `tenant`: only that tenant's sessions (stored as `<tenant>~<id>`, see costs/module.ts), listed by the ids the
 * tenant's key uses (without the namespace); undefined = every session, by stored id.
 */
export async function listSessions(redis: Redis, prefix: string, limit = 200, scanBudget = 20_000, tenant?: string): Promise<{ sessions: string[]; truncated: boolean }> {
  const ns = tenant === undefined ? '' : `${tenant}~`;
  const match = `${globLiteral(`${prefix}:{session:${ns}`)}*}:traces`;
  const head = `${prefix}:{session:${ns}`;
  const found = new Set<string>();
  let examined = 0;
  let unfinished = false;
  // On a cluster every master holds its own part of the keyspace: each is walked, sharing the budget.
  const nodes = masters(redis);
  for (const [i, node] of nodes.entries()) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      examined += 1000;
      for (const k of batch) found.add(k.slice(head.length, k.length - '}:traces'.length));
    } while (cursor !== '0' && examined < scanBudget);
    if (cursor !== '0') unfinished = true;
    if (examined >= scanBudget) {
      if (i < nodes.length - 1) unfinished = true;
      break;
    }
  }
  const named = [...found].sort((a, b) => Number(a.startsWith('trace-')) - Number(b.startsWith('trace-')) || a.localeCompare(b));
  return { sessions: named.slice(0, limit), truncated: unfinished || named.length > limit };
}
