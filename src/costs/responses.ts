import { Type } from '@sinclair/typebox';
import { DIMENSIONS } from './rollup-vector.js';

/** Response schemas (OpenAPI is generated from them; fast-json-stringify serialises with them). */

const Int = Type.Integer();
const Tokens = Type.Object({ input: Int, output: Int, cacheRead: Int, cacheWrite: Int, reasoning: Int });

const totalsFields = {
  calls: Int,
  tokens: Type.Object({ input: Int, output: Int, cacheRead: Int, cacheWrite: Int, reasoning: Int, total: Int }),
  costUsd: Type.Number({ description: 'Priced part only (provided + computed); see unpricedCalls and complete.' }),
  costNano: Type.Integer({ description: 'Exact cost in nano-USD (1e-9 USD).' }),
  providedNano: Int,
  computedNano: Int,
  unpricedCalls: Type.Integer({ description: 'Calls with usage but no price: their cost is unknown, not $0.' }),
  unpricedTokens: Int,
  unmeteredCalls: Type.Integer({ description: 'LLM calls that reported no usage (e.g. streams).' }),
  complete: Type.Boolean({ description: 'False when some calls are unpriced or unmetered.' }),
};
export const TotalsView = Type.Object(totalsFields);
export const Breakdown = Type.Object({ key: Type.String(), ...totalsFields });

const Str = Type.Optional(Type.String());
export const CostNode = Type.Object({
  traceId: Type.String(),
  spanId: Type.String(),
  parentSpanId: Str,
  children: Type.Array(Type.String()),
  depth: Int,
  level: Int,
  agent: Type.String(),
  task: Str,
  customer: Str,
  team: Str,
  kind: Type.String(),
  name: Str,
  provider: Str,
  model: Str,
  status: Type.String(),
  attempt: Type.Optional(Int),
  start: Type.String(),
  end: Type.String(),
  decisionId: Str,
  role: Type.Union([Type.Literal('leaf'), Type.Literal('claimed'), Type.Literal('unmetered'), Type.Literal('structural')]),
  orphan: Type.Boolean(),
  failed: Type.Boolean(),
  usage: Type.Optional(Tokens),
  unbilledReason: Type.Optional(Type.String({ description: 'Why the call billed nothing (zero tokens, $0; e.g. `http 503`).' })),
  priceSource: Type.String(),
  selfCostUsd: Type.Union([Type.Number(), Type.Null()]),
  selfCostNano: Type.Union([Type.Integer(), Type.Null()]),
  subtree: TotalsView,
  claim: Type.Optional(
    Type.Object({
      tokens: Int,
      costUsd: Type.Union([Type.Number(), Type.Null()]),
      childTokens: Int,
      childCostUsd: Type.Number(),
      disagrees: Type.Boolean(),
    }),
  ),
});

export const SessionCostsResponse = Type.Object({
  sessionId: Type.String(),
  traces: Type.Array(Type.String()),
  total: TotalsView,
  nodes: Type.Array(CostNode),
  pending: Type.Array(Type.String()),
  byAgent: Type.Array(Breakdown),
  byLevel: Type.Array(Breakdown),
  byTask: Type.Array(Breakdown),
  attempts: Type.Object({ failed: TotalsView, successful: TotalsView, failedSpans: Int, retriedSpans: Int, maxAttempt: Int }),
  wastedOnRetries: Type.Object({ costUsd: Type.Number(), costNano: Int, calls: Int }),
  coordinator: Type.Object({ agent: Type.Union([Type.String(), Type.Null()]), costUsd: Type.Number(), costNano: Int, overhead: Type.Union([Type.Number(), Type.Null()]) }),
  claims: Type.Object({ count: Int, disagreeing: Int }),
});

export const CostReportResponse = Type.Object({
  groupBy: Type.Union(DIMENSIONS.map((d) => Type.Literal(d))),
  from: Type.String(),
  to: Type.String(),
  rows: Type.Array(Breakdown),
  total: TotalsView,
});

const Pct = Type.Object({ p50: Type.Number(), p95: Type.Number(), p99: Type.Number() });
export const EnvelopesResponse = Type.Object({
  pipeline: Type.String(),
  sessions: Int,
  skippedFailed: Int,
  sample: Type.Object({ limit: Int, includeFailed: Type.Boolean() }),
  roles: Type.Array(
    Type.Object({
      agent: Type.String(),
      inPipeline: Type.Boolean(),
      sessions: Int,
      tokens: Pct,
      costUsd: Pct,
      recommended: Type.Object({ tokens: Int, costUsd: Type.Number() }),
      utilization: Type.Union([Type.Object({ median: Type.Number(), sessions: Int }), Type.Null()]),
      exhaustionRate: Type.Number(),
      flags: Type.Array(Type.Union([Type.Literal('over-budgeted'), Type.Literal('too-tight')])),
      models: Type.Optional(
        Type.Record(Type.String(), Type.Object({ sessions: Int, tokens: Pct, costUsd: Pct }), {
          description: 'Pipelines with model tiers: the same percentiles per model the allocation served the agent on.',
        }),
      ),
    }),
  ),
});
