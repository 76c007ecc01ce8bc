import { nanoToUsd } from './span.js';
import { addTotals, costNano, counted, zeroTotals, type Node, type ResolvedTrace, type Totals } from './tree.js';
import { totalsView, type TotalsView } from './views.js';

export interface CostNodeView {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  children: string[];
  depth: number;
  level: number;
  agent: string;
  task?: string;
  customer?: string;
  team?: string;
  kind: string;
  name?: string;
  provider?: string;
  model?: string;
  status: string;
  attempt?: number;
  start: string;
  end: string;
  decisionId?: string;
  role: Node['role'];
  orphan: boolean;
  failed: boolean;
  usage?: { input: number; output: number; cacheRead: number; cacheWrite: number; reasoning: number };
  /** Where the span's own cost comes from: provided, override, catalog, unpriced, none. */
  priceSource: string;
  /** Own cost when counted; null when counted but unpriced (never $0). */
  selfCostUsd: number | null;
  selfCostNano: number | null;
  subtree: TotalsView;
  claim?: { tokens: number; costUsd: number | null; childTokens: number; childCostUsd: number; disagrees: boolean };
}

export interface Breakdown extends TotalsView {
  key: string;
}

export interface SessionCosts {
  sessionId: string;
  traces: string[];
  total: TotalsView;
  /** Pre-order, parents first; `children` name each node's children. */
  nodes: CostNodeView[];
  /** Spans whose parent has not arrived: held as roots (and counted) until it comes. */
  pending: string[];
  byAgent: Breakdown[];
  /** Routing level: 0 = the root agent, +1 each time work passes to another agent. */
  byLevel: Breakdown[];
  /** Task branch: the explicit task, else the subtree under the root (`agent#spanId`); `(root)` for the root's own calls. */
  byTask: Breakdown[];
  attempts: { failed: TotalsView; successful: TotalsView; failedSpans: number; retriedSpans: number; maxAttempt: number };
  /** Cost spent inside failed attempts (a failed span or anything under one). */
  wastedOnRetries: { costUsd: number; costNano: number; calls: number };
  coordinator: { agent: string | null; costUsd: number; costNano: number; overhead: number | null };
  claims: { count: number; disagreeing: number };
}

function breakdown(groups: Map<string, Totals>): Breakdown[] {
  return [...groups]
    .map(([key, t]) => ({ key, ...totalsView(t) }))
    .sort((a, b) => b.costNano - a.costNano || b.tokens.total - a.tokens.total || (a.key < b.key ? -1 : 1));
}

function bump(m: Map<string, Totals>, key: string, t: Totals): void {
  let g = m.get(key);
  if (!g) m.set(key, (g = zeroTotals()));
  addTotals(g, t);
}

/** The session's cost tree and its breakdowns, from resolved traces (only spans attributed to the session). */
export function sessionCosts(sessionId: string, traces: readonly ResolvedTrace[]): SessionCosts {
  const total = zeroTotals();
  const byAgent = new Map<string, Totals>();
  const byLevel = new Map<string, Totals>();
  const byTask = new Map<string, Totals>();
  const failed = zeroTotals();
  const ok = zeroTotals();
  const nodes: CostNodeView[] = [];
  const pending: string[] = [];
  let failedSpans = 0;
  let retriedSpans = 0;
  let maxAttempt = 0;
  let claims = 0;
  let disagreeing = 0;
  let coordinator: { agent: string; start: number; orphan: boolean } | undefined;
  const tracesUsed: string[] = [];
  for (const tr of traces) {
    let used = false;
    for (const n of tr.nodes) {
      if (n.sessionId !== sessionId) continue;
      used = true;
      const s = n.span;
      if (s.status === 'error') failedSpans++;
      if (s.attempt !== undefined) {
        maxAttempt = Math.max(maxAttempt, s.attempt);
        if (s.attempt > 1) retriedSpans++;
      }
      if (n.claim) {
        claims++;
        if (n.claim.disagrees) disagreeing++;
      }
      if (n.orphan) pending.push(s.spanId);
      const isRoot = n.parent < 0 || tr.nodes[n.parent]!.sessionId !== sessionId;
      if (isRoot && (!coordinator || (coordinator.orphan && !n.orphan) || (coordinator.orphan === n.orphan && s.start < coordinator.start))) {
        coordinator = { agent: n.agent, start: s.start, orphan: n.orphan };
      }
      if (counted(n)) {
        addTotals(total, n.self);
        bump(byAgent, n.agent, n.self);
        bump(byLevel, String(n.level), n.self);
        bump(byTask, n.branch ?? '(root)', n.self);
        addTotals(n.failed ? failed : ok, n.self);
      }
      // Structural spans add nothing of their own; unpriced and unmetered calls have an unknown cost.
      // A claimed span's own cost is what its aggregate holds beyond its descendants (often 0).
      const own = n.role === 'leaf' || n.role === 'claimed' ? (n.self.unpricedCalls > 0 ? null : costNano(n.self)) : n.role === 'unmetered' ? null : 0;
      nodes.push({
        traceId: tr.traceId,
        spanId: s.spanId,
        ...(s.parentSpanId !== undefined ? { parentSpanId: s.parentSpanId } : {}),
        children: n.children.map((c) => tr.nodes[c]!.span.spanId),
        depth: n.depth,
        level: n.level,
        agent: n.agent,
        ...(n.task !== undefined ? { task: n.task } : {}),
        ...(n.customer !== undefined ? { customer: n.customer } : {}),
        ...(n.team !== undefined ? { team: n.team } : {}),
        kind: s.kind,
        ...(s.name !== undefined ? { name: s.name } : {}),
        ...(s.provider !== undefined ? { provider: s.provider } : {}),
        ...(s.model !== undefined ? { model: s.model } : {}),
        status: s.status,
        ...(s.attempt !== undefined ? { attempt: s.attempt } : {}),
        start: new Date(s.start).toISOString(),
        end: new Date(s.end).toISOString(),
        ...(n.decisionId !== undefined ? { decisionId: n.decisionId } : {}),
        role: n.role,
        orphan: n.orphan,
        failed: n.failed,
        ...(s.usage ? { usage: { ...s.usage } } : {}),
        ...(s.unbilledReason !== undefined ? { unbilledReason: s.unbilledReason } : {}),
        priceSource: n.source,
        selfCostUsd: own === null ? null : nanoToUsd(own),
        selfCostNano: own,
        subtree: totalsView(n.subtree),
        ...(n.claim
          ? {
              claim: {
                tokens: n.claim.tokens,
                costUsd: n.claim.costNano === undefined ? null : nanoToUsd(n.claim.costNano),
                childTokens: n.claim.childTokens,
                childCostUsd: nanoToUsd(n.claim.childCostNano),
                disagrees: n.claim.disagrees,
              },
            }
          : {}),
      });
    }
    if (used) tracesUsed.push(tr.traceId);
  }
  const totalNano = costNano(total);
  const coordTotals = coordinator ? byAgent.get(coordinator.agent) : undefined;
  const coordNano = coordTotals ? costNano(coordTotals) : 0;
  return {
    sessionId,
    traces: tracesUsed,
    total: totalsView(total),
    nodes,
    pending,
    byAgent: breakdown(byAgent),
    byLevel: breakdown(byLevel).sort((a, b) => Number(a.key) - Number(b.key)),
    byTask: breakdown(byTask),
    attempts: { failed: totalsView(failed), successful: totalsView(ok), failedSpans, retriedSpans, maxAttempt },
    wastedOnRetries: { costUsd: nanoToUsd(costNano(failed)), costNano: costNano(failed), calls: failed.calls },
    coordinator: {
      agent: coordinator?.agent ?? null,
      costUsd: nanoToUsd(coordNano),
      costNano: coordNano,
      overhead: totalNano > 0 ? coordNano / totalNano : null,
    },
    claims: { count: claims, disagreeing },
  };
}
