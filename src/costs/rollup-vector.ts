import { Type } from '@sinclair/typebox';
import { jsonDecoder } from '../redis/decode.js';
import type { ModelOverride } from './pricing.js';
import { TOTAL_FIELDS, addTotals, counted, zeroTotals, type ResolvedTrace, type Totals } from './tree.js';

/** Dimensions a cost report can group by. Every one is summed from the same counted spans. */
export const DIMENSIONS = ['customer', 'team', 'agent', 'model', 'day'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export const NONE = '(none)';
export const FIELD_SEP = '\x1f';

const DAY_MS = 86_400_000;
const days = new Map<number, string>();

/** UTC day of an epoch-ms time, `YYYY-MM-DD` (memoised: called for every counted span). */
export function dayOf(ms: number): string {
  const d = Math.floor(ms / DAY_MS);
  let s = days.get(d);
  if (s === undefined) {
    if (days.size > 10_000) days.clear();
    s = new Date(d * DAY_MS).toISOString().slice(0, 10);
    days.set(d, s);
  }
  return s;
}

/** The rollup hash names (`<dim>:<day>`) any span of the trace could touch. */
export function rollupNames(trace: ResolvedTrace): string[] {
  const days = new Set<string>();
  for (const n of trace.nodes) days.add(dayOf(n.span.start));
  return [...days].flatMap((d) => DIMENSIONS.map((dim) => `${dim}:${d}`));
}

/**
 * A trace's whole contribution to the cross-session rollups: rollup name → field (`<value>\x1f<metric>`) → integer.
 * The rollup step replaces the trace's previous contribution with this one, so it is idempotent and picks up
 * re-attribution (a root that arrives late with the customer) and claims (a parent whose children arrived).
 */
export function contribution(trace: ResolvedTrace): Map<string, Map<string, number>> {
  // Sum per (rollup, value) first, then spell out the fields once per group.
  const groups = new Map<string, { name: string; value: string; t: Totals }>();
  const add = (name: string, value: string, t: Totals) => {
    const k = `${name}\x1e${value}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { name, value, t: zeroTotals() }));
    addTotals(g.t, t);
  };
  for (const n of trace.nodes) {
    if (!counted(n)) continue;
    const day = dayOf(n.span.start);
    add(`customer:${day}`, n.customer ?? NONE, n.self);
    add(`team:${day}`, n.team ?? NONE, n.self);
    add(`agent:${day}`, n.agent, n.self);
    add(`model:${day}`, n.span.model ?? NONE, n.self);
    add(`day:${day}`, day, n.self);
  }
  const out = new Map<string, Map<string, number>>();
  for (const { name, value, t } of groups.values()) {
    let h = out.get(name);
    if (!h) out.set(name, (h = new Map()));
    for (const f of TOTAL_FIELDS) {
      const v = t[f];
      if (v !== 0) h.set(`${value}${FIELD_SEP}${f}`, v);
    }
  }
  return out;
}

/**
 * Whether every value of a contribution is an integer the rollup script adds exactly (Lua numbers are doubles, as
 * JavaScript's): at most 2^53 − 1 in magnitude. A trace whose counted tokens or cost sum past it in one field is
 * not rolled up (its new spans are refused; see SpanStore.ingest).
 */
export function contributionInRange(c: Map<string, Map<string, number>>): boolean {
  for (const h of c.values()) for (const v of h.values()) if (!Number.isSafeInteger(v)) return false;
  return true;
}

/**
 * Serialises a contribution for the rollup script: lines of `name \x1e field \x1e value`, every value in plain
 * decimal digits (a safe integer never prints with an exponent; anything else is refused here).
 */
export function encodeContribution(c: Map<string, Map<string, number>>): string {
  const lines: string[] = [];
  for (const [name, h] of c) {
    for (const [f, v] of h) {
      if (!Number.isSafeInteger(v)) throw new RangeError(`rollup contribution ${name} ${f}: ${v} is not a safe integer`);
      lines.push(`${name}\x1e${f}\x1e${v}`);
    }
  }
  return lines.join('\n');
}

/** Per-customer price overrides as the pricing of a trace sees them. */
export type OverridesFor = (customer: string | undefined) => readonly ModelOverride[] | undefined;

/**
 * Separates a trace's applied contribution from its price stamp in the stored "applied" string. The rollup script
 * parses only lines of `name \x1e field \x1e value`, so the stamp line (JSON, in which \x1e never appears raw) is
 * carried along, compared and replaced with the contribution, never summed.
 */
export const STAMP_MARK = '\n\x1d';

/**
 * The price overrides a trace was priced with, for the models it uses, per customer it names: stored with its
 * rollup contribution, so that its cost tree is priced exactly as the rollups were (an override changed later
 * applies to both once the trace is written or re-sent again, never to one of them only).
 */
export function priceStamp(trace: ResolvedTrace, overridesFor: OverridesFor): string {
  const models = new Set<string>();
  const customers = new Set<string | undefined>();
  for (const n of trace.nodes) {
    if (n.span.model !== undefined) models.add(n.span.model.toLowerCase());
    customers.add(n.customer);
  }
  const entries: [string | null, ModelOverride[]][] = [];
  for (const c of customers) {
    const used = (overridesFor(c) ?? []).filter((o) => models.has(o.model.toLowerCase()));
    if (used.length) entries.push([c ?? null, used]);
  }
  return JSON.stringify(entries);
}

const Num = Type.Number();
const decodeStamp: (text: string) => readonly (readonly [string | null, readonly ModelOverride[]])[] | undefined = jsonDecoder(
  Type.Array(
    Type.Tuple([
      Type.Union([Type.String(), Type.Null()]),
      Type.Array(
        Type.Object({
          model: Type.String(),
          provider: Type.Optional(Type.String()),
          inputMTok: Num,
          outputMTok: Num,
          cacheReadMTok: Type.Optional(Num),
          cacheWriteMTok: Type.Optional(Num),
        }),
      ),
    ]),
  ),
);

/**
 * The overrides a stamp recorded (see priceStamp); customers it does not name had none. Undefined for a stamp that
 * does not decode (corrupted in Redis): the trace is then priced with the overrides in force, as one never rolled up.
 */
export function stampedOverrides(stamp: string): OverridesFor | undefined {
  const entries = decodeStamp(stamp);
  if (!entries) return undefined;
  const byCustomer = new Map<string | null, readonly ModelOverride[]>(entries);
  return (customer) => byCustomer.get(customer ?? null);
}

/** The price stamp inside a stored "applied" string (`<version>\n<contribution>` + STAMP_MARK + stamp), if any. */
export function stampOfApplied(applied: string | null): string | undefined {
  if (!applied) return undefined;
  const at = applied.lastIndexOf(STAMP_MARK);
  return at < 0 ? undefined : applied.slice(at + STAMP_MARK.length);
}
