import type { Unit } from './schema.js';

interface AlertBase {
  readonly tenant: string;
  readonly scope: string;
  readonly unit: Unit;
  readonly allocated: number;
  readonly at: number;
}

/** A scope that crossed 50, 80 or 100 % of its allocation (consumption = spent + debt). */
export interface ThresholdAlert extends AlertBase {
  readonly type: 'budget.threshold';
  readonly threshold: 50 | 80 | 100;
  readonly used: number;
}

/**
 * A commit charged a scope beyond what its overage policy allowed (the spend is recorded all the same):
 * `overrun` is the part no policy allowed, `used` the scope's consumption after it, `reservation` the commit's id.
 */
export interface OverrunAlert extends AlertBase {
  readonly type: 'budget.overrun';
  readonly overrun: number;
  readonly used: number;
  readonly reservation?: string;
}

export type BudgetAlert = ThresholdAlert | OverrunAlert;

export type AlertHandler = (alerts: readonly BudgetAlert[]) => void;

/**
 * Parses the scripts' alert entries: "<budget key>|<level>|<used>|<allocated>" for a threshold, and
 * "<budget key>|overrun|<overrun>|<allocated>|<used>" for an overrun.
 */
export function parseAlerts(entries: readonly string[], from: number, tenantPrefix: string, tenant: string, now: number, reservation?: string): BudgetAlert[] {
  const out: BudgetAlert[] = [];
  for (let j = from; j < entries.length; j++) {
    const [key, level, a, allocated, used] = entries[j]!.split('|');
    const { unit, scope } = splitBudgetKey(key!, tenantPrefix);
    if (level === 'overrun') {
      out.push({ type: 'budget.overrun', tenant, scope, unit, overrun: Number(a), used: Number(used), allocated: Number(allocated), at: now, ...(reservation ? { reservation } : {}) });
    } else {
      out.push({ type: 'budget.threshold', tenant, scope, unit, threshold: Number(level) as 50 | 80 | 100, used: Number(a), allocated: Number(allocated), at: now });
    }
  }
  return out;
}

/** `<p>:{tenant:<t>}:b:<unit>:<scope>` → unit and scope. */
export function splitBudgetKey(key: string, budgetPrefix: string): { unit: Unit; scope: string } {
  const rest = key.slice(budgetPrefix.length);
  const c = rest.indexOf(':');
  return { unit: rest.slice(0, c) as Unit, scope: rest.slice(c + 1) };
}
