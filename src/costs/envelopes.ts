import { nanoToUsd } from './span.js';
import { counted, costNano, type ResolvedTrace } from './tree.js';

/** One session's use by one agent role. */
export interface RoleUse {
  readonly tokens: number;
  readonly costNano: number;
  /** Tokens the decision allocated to the role, when known. */
  readonly budget?: number;
  /** The model the decision served the role on (pipelines with model tiers). */
  readonly model?: string;
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface RoleEnvelope {
  agent: string;
  inPipeline: boolean;
  sessions: number;
  tokens: Percentiles;
  costUsd: Percentiles;
  /** 1.5 × P95, rounded up (tokens) — the article's sizing rule. */
  recommended: { tokens: number; costUsd: number };
  /** Median of tokens ÷ allocated budget over the sessions whose budget is known. */
  utilization: { median: number; sessions: number } | null;
  /** Share of sessions that used their whole allocation or the agent's ceiling (maxTokens). */
  exhaustionRate: number;
  flags: ('over-budgeted' | 'too-tight')[];
  /** Per served model (pipelines with model tiers): sessions and percentiles of tokens and cost. */
  models?: Record<string, { sessions: number; tokens: Percentiles; costUsd: Percentiles }>;
}

/** Linear-interpolated quantile of a sorted array. Pure. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export const OVER_BUDGETED_BELOW = 0.5;
export const TOO_TIGHT_ABOVE = 0.1;
export const ENVELOPE_FACTOR = 1.5;

/** Envelope of one role from its per-session uses (sessions where the role ran). Pure. */
export function roleEnvelope(agent: string, uses: readonly RoleUse[], ceiling: number | undefined, inPipeline: boolean): RoleEnvelope {
  const tokens = uses.map((u) => u.tokens).sort((a, b) => a - b);
  const cost = uses.map((u) => u.costNano).sort((a, b) => a - b);
  const withBudget = uses.filter((u) => u.budget !== undefined && u.budget > 0);
  const utils = withBudget.map((u) => u.tokens / u.budget!).sort((a, b) => a - b);
  const exhausted = uses.filter((u) => (u.budget !== undefined && u.budget > 0 && u.tokens >= u.budget) || (ceiling !== undefined && u.tokens >= ceiling)).length;
  const p = (xs: number[], f: (x: number) => number): Percentiles => ({ p50: f(quantile(xs, 0.5)), p95: f(quantile(xs, 0.95)), p99: f(quantile(xs, 0.99)) });
  const tokenP = p(tokens, (x) => Math.round(x));
  const costP = p(cost, (x) => nanoToUsd(Math.round(x)));
  const utilization = utils.length ? { median: quantile(utils, 0.5), sessions: utils.length } : null;
  const exhaustionRate = uses.length ? exhausted / uses.length : 0;
  const flags: RoleEnvelope['flags'] = [];
  if (utilization && utilization.median < OVER_BUDGETED_BELOW) flags.push('over-budgeted');
  if (exhaustionRate > TOO_TIGHT_ABOVE) flags.push('too-tight');
  let models: RoleEnvelope['models'];
  for (const m of new Set(uses.flatMap((u) => (u.model !== undefined ? [u.model] : [])))) {
    const sub = uses.filter((u) => u.model === m);
    const t = sub.map((u) => u.tokens).sort((a, b) => a - b);
    const c = sub.map((u) => u.costNano).sort((a, b) => a - b);
    // No prototype: a model named `__proto__` is a key like any other.
    (models ??= Object.create(null) as NonNullable<RoleEnvelope['models']>)[m] = { sessions: sub.length, tokens: p(t, (x) => Math.round(x)), costUsd: p(c, (x) => nanoToUsd(Math.round(x))) };
  }
  return {
    agent,
    inPipeline,
    sessions: uses.length,
    tokens: tokenP,
    costUsd: costP,
    recommended: { tokens: Math.ceil(ENVELOPE_FACTOR * quantile(tokens, 0.95)), costUsd: nanoToUsd(Math.ceil(ENVELOPE_FACTOR * quantile(cost, 0.95))) },
    utilization,
    exhaustionRate,
    flags,
    ...(models ? { models } : {}),
  };
}

/**
 * Per-role uses of one decision (one session of the pipeline) from its traces: counted spans attributed to
 * the decision, grouped by agent. `failed` when any root span of the decision failed.
 */
export function decisionUses(decisionId: string, traces: readonly ResolvedTrace[]): { byAgent: Map<string, { tokens: number; costNano: number }>; failed: boolean } {
  const byAgent = new Map<string, { tokens: number; costNano: number }>();
  let failed = false;
  for (const t of traces) {
    for (const n of t.nodes) {
      if (n.decisionId !== decisionId) continue;
      if (n.parent < 0 && !n.orphan && n.span.status === 'error') failed = true;
      if (!counted(n)) continue;
      let a = byAgent.get(n.agent);
      if (!a) byAgent.set(n.agent, (a = { tokens: 0, costNano: 0 }));
      a.tokens += n.self.input + n.self.output;
      a.costNano += costNano(n.self);
    }
  }
  return { byAgent, failed };
}
