import type { ModelOverride, PriceSource, Pricer } from './pricing.js';
import type { Span, Usage } from './span.js';
import { namespaced, splitNamespace } from '../http/namespace.js';

/** Integer totals over counted spans. Money in nano-USD. */
export interface Totals {
  calls: number;
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
  /** Cost the callers provided. */
  providedNano: number;
  /** Cost computed from usage, for counted spans that carried no provided cost. */
  computedNano: number;
  /** Counted spans with usage but neither a price nor a provided cost (never shown as $0). */
  unpricedCalls: number;
  unpricedTokens: number;
  /** LLM calls that reported no usage at all (e.g. streams without a usage chunk). */
  unmeteredCalls: number;
}

export const TOTAL_FIELDS = [
  'calls',
  'input',
  'output',
  'cacheRead',
  'cacheWrite',
  'reasoning',
  'providedNano',
  'computedNano',
  'unpricedCalls',
  'unpricedTokens',
  'unmeteredCalls',
] as const satisfies readonly (keyof Totals)[];

/**
 * The session of a trace whose spans named none: `trace-<traceId>`, inside the tenant's namespace when the trace
 * is a tenant key's (`<tenant>~<id>` → `<tenant>~trace-<id>`), so that tenant's key lists and opens it by `trace-<id>`.
 */
export function bareTraceSession(traceId: string): string {
  const { tenant, local } = splitNamespace(traceId);
  return namespaced(tenant, `trace-${local}`);
}

export function zeroTotals(): Totals {
  return { calls: 0, input: 0, output: 0, cacheRead: 0, cacheWrite: 0, reasoning: 0, providedNano: 0, computedNano: 0, unpricedCalls: 0, unpricedTokens: 0, unmeteredCalls: 0 };
}

export function addTotals(into: Totals, t: Totals): void {
  for (const f of TOTAL_FIELDS) into[f] += t[f];
}

export function costNano(t: Totals): number {
  return t.providedNano + t.computedNano;
}

/**
 * How a span counts. `leaf`: its usage is counted. `claimed`: it carries aggregate usage but descendants carry
 * their own, so its numbers are reconciled against theirs and never added on top; only the part of the aggregate
 * its descendants have not reported (yet) counts as its own (`self`), so a partial set of children never makes the
 * total smaller than the aggregate (a call that billed nothing, `unbilledReason`, is a leaf of zero tokens and $0).
 * `unmetered`: an LLM call without usage. `structural`: nothing to count (an
 * agent or tool span without usage).
 */
export type Role = 'leaf' | 'claimed' | 'unmetered' | 'structural';

export interface Node {
  readonly span: Span;
  /** Index of the parent in `ResolvedTrace.nodes`, -1 for roots. */
  parent: number;
  readonly children: number[];
  depth: number;
  /** Routing level: 0 for the root agent, +1 each time the attributed agent changes going down. */
  level: number;
  /** Attribution, inherited from the nearest ancestor that names it (then from the trace). */
  agent: string;
  task: string | undefined;
  /** The task branch: the explicit task, else the subtree under the root it belongs to (`agent#spanId`); undefined for the root's own spans. */
  branch: string | undefined;
  customer: string | undefined;
  team: string | undefined;
  sessionId: string;
  decisionId: string | undefined;
  /** The span or an ancestor failed: its cost belongs to a failed attempt. */
  failed: boolean;
  /** The span names a parent that has not arrived (yet): held as a root until it comes. */
  orphan: boolean;
  role: Role;
  /** The span's own numbers when it is counted (zero otherwise). */
  readonly self: Totals;
  /** Sum of `self` over the subtree. */
  readonly subtree: Totals;
  /** Pricing of the span's own usage, whether counted or not. */
  source: PriceSource;
  ownNano: number | undefined;
  claim?: { tokens: number; costNano: number | undefined; childTokens: number; childCostNano: number; disagrees: boolean; unreportedTokens: number };
}

export interface ResolvedTrace {
  readonly traceId: string;
  /** Pre-order: every parent before its children. */
  readonly nodes: Node[];
  readonly roots: number[];
}

export const UNATTRIBUTED = '(unattributed)';

export interface ResolveOptions {
  readonly pricer: Pricer;
  /** Per-tenant price overrides for a customer (undefined customer: the global ones). */
  readonly overridesFor?: (customer: string | undefined) => readonly ModelOverride[] | undefined;
}

function carries(s: Span): boolean {
  return s.usage !== undefined || s.providedNano !== undefined;
}

/** Relative tolerance when reconciling a claimed aggregate against its children. */
const CLAIM_TOLERANCE = 0.01;

/**
 * Builds one trace's tree iteratively (no recursion: deep trees do not overflow the stack), resolves inherited
 * attribution, decides which spans are counted, prices them and sums self/subtree totals.
 */
export function resolveTrace(traceId: string, spans: readonly Span[], opts: ResolveOptions): ResolvedTrace {
  const sorted = [...spans].sort((a, b) => a.start - b.start || (a.spanId < b.spanId ? -1 : 1));
  const byId = new Map<string, Span>();
  for (const s of sorted) byId.set(s.spanId, s);
  const kids = new Map<string, Span[]>();
  const rootSpans: Span[] = [];
  for (const s of sorted) {
    if (s.parentSpanId !== undefined && s.parentSpanId !== s.spanId && byId.has(s.parentSpanId)) {
      let l = kids.get(s.parentSpanId);
      if (!l) kids.set(s.parentSpanId, (l = []));
      l.push(s);
    } else rootSpans.push(s);
  }
  const first = <K extends 'customer' | 'team' | 'sessionId' | 'decisionId'>(k: K) => sorted.find((s) => s[k] !== undefined)?.[k];
  const trace = { customer: first('customer'), team: first('team'), sessionId: first('sessionId') ?? bareTraceSession(traceId), decisionId: first('decisionId') };

  const nodes: Node[] = [];
  const roots: number[] = [];
  const visited = new Set<string>();
  const visit = (start: Span) => {
    // Explicit stack: [span, parent index].
    const stack: [Span, number][] = [[start, -1]];
    while (stack.length) {
      const [s, pi] = stack.pop()!;
      if (visited.has(s.spanId)) continue;
      visited.add(s.spanId);
      const p = pi >= 0 ? nodes[pi]! : undefined;
      const agent = s.agent ?? p?.agent ?? UNATTRIBUTED;
      const n: Node = {
        span: s,
        parent: pi,
        children: [],
        depth: p ? p.depth + 1 : 0,
        level: p ? p.level + (agent !== p.agent ? 1 : 0) : 0,
        agent,
        task: s.task ?? p?.task,
        branch: s.task ?? p?.task ?? (p ? (p.parent < 0 ? `${agent}#${s.spanId}` : p.branch) : undefined),
        customer: s.customer ?? (p ? p.customer : trace.customer),
        team: s.team ?? (p ? p.team : trace.team),
        sessionId: s.sessionId ?? p?.sessionId ?? trace.sessionId,
        decisionId: s.decisionId ?? (p ? p.decisionId : trace.decisionId),
        failed: s.status === 'error' || (p?.failed ?? false),
        orphan: !p && s.parentSpanId !== undefined,
        role: 'structural',
        self: zeroTotals(),
        subtree: zeroTotals(),
        source: 'none',
        ownNano: undefined,
      };
      const idx = nodes.push(n) - 1;
      if (p) p.children.push(idx);
      else roots.push(idx);
      const c = kids.get(s.spanId);
      if (c) for (let i = c.length - 1; i >= 0; i--) stack.push([c[i]!, idx]);
    }
  };
  for (const r of rootSpans) visit(r);
  // Spans caught in a parent cycle are unreachable from any root: break the cycle at the earliest one.
  for (const s of sorted) if (!visited.has(s.spanId)) visit(s);

  // Post-order (reverse pre-order): a span carrying usage is counted only if no descendant carries any.
  const carryingBelow = new Array<boolean>(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    const s = n.span;
    const priced = opts.pricer.price(s, opts.overridesFor?.(n.customer));
    n.source = priced.source;
    // A call that billed nothing costs $0 whatever its model's price (an unknown model included).
    n.ownNano = s.providedNano ?? priced.computedNano ?? (s.unbilledReason !== undefined ? 0 : undefined);
    if (carries(s)) {
      if (carryingBelow[i]) {
        n.role = 'claimed';
        const u = s.usage;
        const tokens = u ? u.input + u.output : 0;
        const childTokens = n.subtree.input + n.subtree.output;
        const childCost = costNano(n.subtree);
        const tokenOff = u !== undefined && Math.abs(tokens - childTokens) > Math.max(1, CLAIM_TOLERANCE * tokens);
        const costOff = n.ownNano !== undefined && n.subtree.unpricedCalls === 0 && Math.abs(n.ownNano - childCost) > Math.max(1, CLAIM_TOLERANCE * n.ownNano);
        const overrides = opts.overridesFor?.(n.customer);
        const unreported = claimResidual(n, tokens, childCost, (usage) => opts.pricer.price({ model: s.model, provider: s.provider, start: s.start, usage }, overrides).computedNano);
        n.claim = { tokens, costNano: n.ownNano, childTokens, childCostNano: childCost, disagrees: tokenOff || costOff, unreportedTokens: unreported };
      } else {
        n.role = 'leaf';
        const t = n.self;
        t.calls = 1;
        if (s.usage) {
          t.input = s.usage.input;
          t.output = s.usage.output;
          t.cacheRead = s.usage.cacheRead;
          t.cacheWrite = s.usage.cacheWrite;
          t.reasoning = s.usage.reasoning;
        }
        if (s.providedNano !== undefined) t.providedNano = s.providedNano;
        else if (n.ownNano !== undefined) t.computedNano = n.ownNano;
        else {
          t.unpricedCalls = 1;
          t.unpricedTokens = t.input + t.output;
        }
      }
    } else if (s.kind === 'llm' && !carryingBelow[i]) {
      n.role = 'unmetered';
      n.self.unmeteredCalls = 1;
    }
    addTotals(n.subtree, n.self);
    if (n.parent >= 0) {
      addTotals(nodes[n.parent]!.subtree, n.subtree);
      if (carryingBelow[i] || carries(s)) carryingBelow[n.parent] = true;
    }
  }
  return { traceId, nodes, roots };
}

/**
 * What a claimed span's aggregate holds beyond what its descendants reported (`n.subtree`, before its own numbers
 * are added): per token field max(0, aggregate − descendants), priced like the span itself (`priceOf`; a provided
 * aggregate cost is split in the proportion of the computed prices, else of the tokens). A fully reported aggregate
 * leaves exactly 0. An aggregate that reports only a cost counts what exceeds its descendants' cost. Written into
 * `n.self`; returns the unreported tokens.
 */
function claimResidual(n: Node, tokens: number, childCost: number, priceOf: (u: Usage) => number | undefined): number {
  const s = n.span;
  const t = n.self;
  const u = s.usage;
  if (u) {
    t.input = Math.max(0, u.input - n.subtree.input);
    t.output = Math.max(0, u.output - n.subtree.output);
    // Input includes cache tokens and output reasoning tokens: the unreported parts keep that shape.
    t.cacheRead = Math.min(t.input, Math.max(0, u.cacheRead - n.subtree.cacheRead));
    t.cacheWrite = Math.min(t.input - t.cacheRead, Math.max(0, u.cacheWrite - n.subtree.cacheWrite));
    t.reasoning = Math.min(t.output, Math.max(0, u.reasoning - n.subtree.reasoning));
  }
  const unreported = t.input + t.output;
  const rest: Usage = { input: t.input, output: t.output, cacheRead: t.cacheRead, cacheWrite: t.cacheWrite, reasoning: t.reasoning };
  const anyRest = unreported + rest.cacheRead + rest.cacheWrite + rest.reasoning > 0;
  if (n.ownNano !== undefined) {
    let cost = 0;
    if (u && anyRest) {
      const restPrice = priceOf(rest);
      if (s.providedNano === undefined && restPrice !== undefined) cost = restPrice;
      else {
        const whole = priceOf(u);
        cost = whole !== undefined && whole > 0 && restPrice !== undefined ? Math.round((n.ownNano * restPrice) / whole) : tokens > 0 ? Math.round((n.ownNano * unreported) / tokens) : 0;
      }
    } else if (!u && n.subtree.unpricedCalls === 0) cost = Math.max(0, n.ownNano - childCost);
    if (s.providedNano !== undefined) t.providedNano = cost;
    else t.computedNano = cost;
  } else if (anyRest) {
    // An unpriced aggregate: its unreported part is of unknown cost, never $0.
    t.unpricedCalls = 1;
    t.unpricedTokens = unreported;
  }
  return unreported;
}

/** A counted node (its `self` holds its numbers; a claimed span's is what its descendants have not reported). */
export function counted(n: Node): boolean {
  return n.role === 'leaf' || n.role === 'unmetered' || n.role === 'claimed';
}
