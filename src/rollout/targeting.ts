import type { Condition, Targeting } from './schema.js';

/** A compiled targeting rule (the engine's compileTargeting: local mode targets identically). */
export { compileTargeting, type Predicate } from '@apportion/sdk/engine';

/** Problems a schema cannot express (a numeric op needs a numeric value…); returns messages naming the field. */
export function targetingProblems(t: Targeting, path: string): string[] {
  const out: string[] = [];
  const check = (list: readonly Condition[] | undefined, name: string) =>
    list?.forEach((c, i) => {
      const at = `${path}/${name}/${i}`;
      if (['gt', 'gte', 'lt', 'lte'].includes(c.op) && typeof c.value !== 'number') out.push(`${at}/value: op ${c.op} needs a numeric value`);
      if (['in', 'not_in'].includes(c.op) && c.values === undefined && c.value === undefined) out.push(`${at}/values: op ${c.op} needs values`);
      if (['eq', 'neq', 'prefix', 'contains'].includes(c.op) && c.value === undefined) out.push(`${at}/value: op ${c.op} needs a value`);
      if (['prefix', 'contains'].includes(c.op) && typeof c.value !== 'string') out.push(`${at}/value: op ${c.op} needs a string value`);
    });
  check(t.all, 'all');
  check(t.any, 'any');
  return out;
}

