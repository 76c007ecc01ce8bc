import type { Unit } from './schema.js';

/** A scope that crossed 50, 80 or 100 % of its allocation (consumption = spent + debt). */
export interface BudgetAlert {
  readonly tenant: string;
  readonly scope: string;
  readonly unit: Unit;
  readonly threshold: 50 | 80 | 100;
  readonly used: number;
  readonly allocated: number;
  readonly at: number;
}

export type AlertHandler = (alerts: readonly BudgetAlert[]) => void;

/** Parses the scripts' alert entries "<budget key>|<level>|<used>|<allocated>". */
export function parseAlerts(entries: readonly string[], from: number, tenantPrefix: string, tenant: string, now: number): BudgetAlert[] {
  const out: BudgetAlert[] = [];
  for (let j = from; j < entries.length; j++) {
    const [key, level, used, allocated] = entries[j]!.split('|');
    const { unit, scope } = splitBudgetKey(key!, tenantPrefix);
    out.push({ tenant, scope, unit, threshold: Number(level) as 50 | 80 | 100, used: Number(used), allocated: Number(allocated), at: now });
  }
  return out;
}

/** `<p>:{tenant:<t>}:b:<unit>:<scope>` → unit and scope. */
export function splitBudgetKey(key: string, budgetPrefix: string): { unit: Unit; scope: string } {
  const rest = key.slice(budgetPrefix.length);
  const c = rest.indexOf(':');
  return { unit: rest.slice(0, c) as Unit, scope: rest.slice(c + 1) };
}
