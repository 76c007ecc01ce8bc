/**
 * Budget scopes (pure, no I/O). A scope is a path of `level:name` segments in a fixed order, e.g.
 * `tenant:acme/workspace:alpha/workflow:task-1/agent:planner`; levels may be skipped but never reordered,
 * and the tenant is always present (it is the Redis hash tag: every scope of a tenant lives in one slot).
 */
export const LEVELS = ['tenant', 'workspace', 'workflow', 'agent'] as const;
export type Level = (typeof LEVELS)[number];

/** Names allowed in a segment. No spaces, slashes or colons, so keys and paths stay unambiguous. */
export const NAME_PATTERN = '^[A-Za-z0-9_.@-]{1,128}$';
const NAME = new RegExp(NAME_PATTERN);

export type Subject = Partial<Record<Level, string>> & { readonly tenant: string };

export interface Scope {
  readonly tenant: string;
  /** Canonical path. */
  readonly path: string;
  /** The path of every level from the tenant down to this scope (root first, this scope last). */
  readonly chain: readonly string[];
}

export class ScopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScopeError';
  }
}

/** Builds the scope from named levels; missing levels are skipped. */
export function scopeOf(subject: Subject): Scope {
  const chain: string[] = [];
  let path = '';
  for (const level of LEVELS) {
    const name = subject[level];
    if (name === undefined) continue;
    if (!NAME.test(name)) throw new ScopeError(`${level} "${name}" must match ${NAME_PATTERN}`);
    path = path ? `${path}/${level}:${name}` : `${level}:${name}`;
    chain.push(path);
  }
  if (subject.tenant === undefined || chain.length === 0) throw new ScopeError('tenant is required');
  return { tenant: subject.tenant, path, chain };
}

const cache = new Map<string, Scope>();

/** Parses `tenant:<t>/workspace:<w>/workflow:<f>/agent:<a>` (levels in this order, any but tenant skippable). */
export function parseScope(text: string): Scope {
  const hit = cache.get(text);
  if (hit) return hit;
  const subject: Partial<Record<Level, string>> = {};
  let last = -1;
  for (const seg of text.split('/')) {
    const c = seg.indexOf(':');
    if (c <= 0) throw new ScopeError(`segment "${seg}" must be "<level>:<name>"`);
    const level = seg.slice(0, c) as Level;
    const at = LEVELS.indexOf(level);
    if (at < 0) throw new ScopeError(`unknown level "${seg.slice(0, c)}" (levels: ${LEVELS.join(', ')})`);
    if (at <= last) throw new ScopeError(`level "${level}" is out of order or repeated (order: ${LEVELS.join(' / ')})`);
    last = at;
    subject[level] = seg.slice(c + 1);
  }
  if (subject.tenant === undefined) throw new ScopeError('must start with "tenant:<name>"');
  const scope = scopeOf(subject as Subject);
  // Hot-path memo: reservations repeat a small set of scopes. Bounded so hostile input cannot grow it.
  if (cache.size > 10_000) cache.clear();
  cache.set(text, scope);
  return scope;
}

/** Whether `child` is `parent` or below it. */
export function isWithin(child: string, parent: string): boolean {
  return child === parent || child.startsWith(`${parent}/`);
}
