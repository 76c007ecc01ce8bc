import type { Keys } from '../redis/keys.js';

/**
 * Keys of the cost domain. Spans live per trace (`{trace:<id>}`), not per session: OpenTelemetry exporters
 * ship children before their parents and often put the session id on the root only, so a span cannot always
 * name its session when it arrives. Sessions and pipelines index their traces; rollups share one slot.
 *
 *   <p>:{trace:<t>}:spans               hash  spanId → compact span line (see line.ts), first write wins
 *   <p>:{trace:<t>}:ver                 string version of the trace, bumped when a span is newly stored
 *   <p>:{session:<s>}:traces            set   traceIds whose spans belong to the session
 *   <p>:{pipeline:<id>}:cost-traces     zset  "<decisionId>/<traceId>" by first-seen ms (envelope sample)
 *   <p>:{pipeline:<id>}:cost-budget:<d> string budgets JSON of decision d, copied before the record expires
 *   <p>:{costs}:rollup:<dim>:<day>      hash  "<value>\x1f<metric>" → integer (dim: customer|team|agent|model|day)
 *   <p>:{costs}:applied:<t>             string the trace's contribution last applied to the rollups (+ its version)
 */
export interface CostKeys {
  traceSpans(traceId: string): string;
  traceVersion(traceId: string): string;
  sessionTraces(sessionId: string): string;
  pipelineTraces(pipelineId: string): string;
  pipelineBudget(pipelineId: string, decisionId: string): string;
  rollup(name: string): string;
  applied(traceId: string): string;
}

export function costKeys(keys: Keys): CostKeys {
  const p = keys.prefix;
  return {
    traceSpans: (t) => `${p}:{trace:${t}}:spans`,
    traceVersion: (t) => `${p}:{trace:${t}}:ver`,
    sessionTraces: (s) => `${p}:{session:${s}}:traces`,
    pipelineTraces: (id) => keys.pipeline(id, 'cost-traces'),
    pipelineBudget: (id, d) => keys.pipeline(id, 'cost-budget', d),
    rollup: (name) => `${p}:{costs}:rollup:${name}`,
    applied: (t) => `${p}:{costs}:applied:${t}`,
  };
}
