import type { Features } from '../strategies/types.js';
import type { Condition, Targeting } from './schema.js';

/** A compiled targeting rule: true when the request is eligible. Pure. */
export type Predicate = (features: Features, unitKey: string) => boolean;

type Scalar = string | number | boolean;

function attr(features: Features, unitKey: string, name: string): Scalar | null | undefined {
  return name === 'unitKey' ? unitKey : features[name];
}

function compileCondition(c: Condition): Predicate {
  const set = new Set<Scalar>(c.values ?? (c.value !== undefined ? [c.value] : []));
  const v = c.value;
  const num = typeof v === 'number' ? v : Number.NaN;
  const str = v === undefined ? '' : String(v);
  let test: (x: Scalar | null | undefined) => boolean;
  switch (c.op) {
    case 'in':
      test = (x) => x !== undefined && x !== null && set.has(x);
      break;
    case 'not_in':
      test = (x) => x === undefined || x === null || !set.has(x);
      break;
    case 'eq':
      test = (x) => x === v;
      break;
    case 'neq':
      // A missing attribute is not "a different value": like every comparison, it fails (docs/rollout.md).
      test = (x) => x !== undefined && x !== null && x !== v;
      break;
    case 'gt':
      test = (x) => typeof x === 'number' && x > num;
      break;
    case 'gte':
      test = (x) => typeof x === 'number' && x >= num;
      break;
    case 'lt':
      test = (x) => typeof x === 'number' && x < num;
      break;
    case 'lte':
      test = (x) => typeof x === 'number' && x <= num;
      break;
    case 'prefix':
      test = (x) => typeof x === 'string' && x.startsWith(str);
      break;
    case 'contains':
      test = (x) => typeof x === 'string' && x.includes(str);
      break;
    case 'exists':
      test = (x) => x !== undefined && x !== null;
      break;
  }
  const name = c.attribute;
  return c.not ? (f, u) => !test(attr(f, u, name)) : (f, u) => test(attr(f, u, name));
}

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

/**
 * Compiles a rule: every `all` condition AND (when `any` is given) at least one `any` condition; then
 * `invert` takes the complement. Missing attributes fail comparisons (and pass `not_in`). No rule: everyone.
 */
export function compileTargeting(t: Targeting | undefined): Predicate {
  if (!t) return () => true;
  const all = (t.all ?? []).map(compileCondition);
  const any = (t.any ?? []).map(compileCondition);
  const base: Predicate = (f, u) => {
    for (const p of all) if (!p(f, u)) return false;
    if (any.length === 0) return true;
    for (const p of any) if (p(f, u)) return true;
    return false;
  };
  return t.invert ? (f, u) => !base(f, u) : base;
}
