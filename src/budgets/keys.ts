/**
 * Redis keys of the budgets domain. Every key of a tenant carries the `{tenant:<t>}` hash tag, so one Lua
 * script can reserve across tenant → workspace → workflow → agent on one Redis Cluster slot:
 *
 *   <p>:{tenant:<t>}:b:<unit>:<scope>   hash    one budget ledger (a, r, v, s, d, f, p, o, per, pk, al)
 *   <p>:{tenant:<t>}:bidx               set     "<unit>:<scope>" of every budget of the tenant
 *   <p>:{tenant:<t>}:r:<id>             hash    one reservation (st, amt, ks, exp, x, sc, u, cf, ca; ch = held by
 *                                               its active draws; a draw has par = its parent's key, no ks)
 *   <p>:{tenant:<t>}:dl                 zset    ACTIVE reservation keys by deadline (the sweeper's work list)
 *   <p>:{tenant:<t>}:i:<key>            string  idempotency record "<fingerprint>\n<answer>"
 *   <p>:{tenant:<t>}:alerts             stream  threshold crossings (capped)
 *   <p>:{tenant:<t>}:overruns           stream  overrun events (capped; apart, so they never push out threshold alerts)
 *   <p>:budget-tenants                  set     tenants with budgets (the sweeper iterates it)
 */
export interface BudgetKeys {
  tag(tenant: string): string;
  budget(tenant: string, unit: string, scope: string): string;
  /** Prefix of budget hashes of a tenant (the balances script appends "<unit>:<scope>"). */
  budgetPrefix(tenant: string): string;
  index(tenant: string): string;
  reservation(tenant: string, id: string): string;
  deadlines(tenant: string): string;
  idempotency(tenant: string, key: string): string;
  alerts(tenant: string): string;
  overruns(tenant: string): string;
  tenants(): string;
}

export function budgetKeys(prefix: string): BudgetKeys {
  const tag = (t: string) => `${prefix}:{tenant:${t}}`;
  return {
    tag,
    budget: (t, unit, scope) => `${tag(t)}:b:${unit}:${scope}`,
    budgetPrefix: (t) => `${tag(t)}:b:`,
    index: (t) => `${tag(t)}:bidx`,
    reservation: (t, id) => `${tag(t)}:r:${id}`,
    deadlines: (t) => `${tag(t)}:dl`,
    idempotency: (t, key) => `${tag(t)}:i:${key}`,
    alerts: (t) => `${tag(t)}:alerts`,
    overruns: (t) => `${tag(t)}:overruns`,
    tenants: () => `${prefix}:budget-tenants`,
  };
}
