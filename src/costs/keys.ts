import type { Keys } from '../redis/keys.js';

/**
 * Keys of the cost domain. Spans live per trace (`{trace:<id>}`), not per session: OpenTelemetry exporters
 * ship children before their parents and often put the session id on the root only, so a span cannot always
 * name its session when it arrives. Sessions and pipelines index their traces; rollups share one slot.
 *
 *   <p>:{trace:<t>}:spans               hash  spanId → compact span line (see line.ts), first write wins
 *   <p>:{trace:<t>}:ver                 string version of the trace, bumped when a span is newly stored
 *   <p>:{session:<s>}:traces            set   traceIds whose spans belong to the session
 *   <p>:{session-index}:named|bare      zset  stored session ids by last write ms (every session; `bare`: the
 *                                             `trace-…` ids of traces that named none); with `shards` > 1 one pair
 *                                             per shard, `{session-index:<shard>}` (shard = shardOf(session id))
 *   <p>:{session-index~<t>}:named|bare  zset  the same, of tenant t's sessions only (`<t>~<id>`)
 *   <p>:{pipeline:<id>}:cost-traces     zset  "<decisionId>/<traceId>" by first-seen ms (envelope sample)
 *   <p>:{pipeline:<id>}:cost-budget:<d> string budgets JSON of decision d, copied before the record expires
 *   <p>:{costs}:rollup:<dim>:<day>      hash  "<value>\x1f<metric>" → integer (dim: customer|team|agent|model|day)
 *   <p>:{costs}:applied:<t>             string the trace's contribution last applied to the rollups (+ its version)
 *   <p>:{costs}:repair                  zset  "<nonce>/<traceId>" by epoch ms: a request's intent to roll up and
 *                                             index the traces it stores, removed with the rollup (see ingest.ts)
 *
 * With a sharded layout (`keys.shards` > 1, the default on a cluster) the rollup slot is split: a trace's applied
 * string and its share of the rollups live in `{costs:<shard>}` (shard = keys.shardOf(traceId)), so concurrent
 * ingest spreads over `shards` slots; a report sums the rollup hash of every shard.
 */
export interface CostKeys {
  traceSpans(traceId: string): string;
  traceVersion(traceId: string): string;
  sessionTraces(sessionId: string): string;
  /** The index of every session (one shard of it), named sessions or bare traces' ids. */
  sessionIndex(shard: number, bare: boolean): string;
  /** The index of one tenant's sessions. */
  tenantSessionIndex(tenant: string, bare: boolean): string;
  pipelineTraces(pipelineId: string): string;
  pipelineBudget(pipelineId: string, decisionId: string): string;
  /** Rollup hash `name` of one shard (0 ≤ shard < shards). */
  rollup(name: string, shard?: number): string;
  applied(traceId: string): string;
  /** Repair intents of one shard (the traces a request is storing, until their rollup is applied). */
  repair(shard: number): string;
  /** The rollup shard of a trace. */
  shardOf(traceId: string): number;
  readonly shards: number;
}

export function costKeys(keys: Keys): CostKeys {
  const p = keys.prefix;
  const slot = (shard: number) => (keys.shards === 1 ? '{costs}' : `{costs:${shard}}`);
  return {
    traceSpans: (t) => `${p}:{trace:${t}}:spans`,
    traceVersion: (t) => `${p}:{trace:${t}}:ver`,
    sessionTraces: (s) => `${p}:{session:${s}}:traces`,
    sessionIndex: (shard, bare) => `${p}:${keys.shards === 1 ? '{session-index}' : `{session-index:${shard}}`}:${bare ? 'bare' : 'named'}`,
    tenantSessionIndex: (t, bare) => `${p}:{session-index~${t}}:${bare ? 'bare' : 'named'}`,
    pipelineTraces: (id) => keys.pipeline(id, 'cost-traces'),
    pipelineBudget: (id, d) => keys.pipeline(id, 'cost-budget', d),
    rollup: (name, shard = 0) => `${p}:${slot(shard)}:rollup:${name}`,
    applied: (t) => `${p}:${slot(keys.shardOf(t))}:applied:${t}`,
    repair: (shard) => `${p}:${slot(shard)}:repair`,
    shardOf: (t) => keys.shardOf(t),
    shards: keys.shards,
  };
}
