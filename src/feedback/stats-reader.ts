import { unpack } from 'msgpackr';
import type { Redis } from 'ioredis';
import { fromWelford, type Moments } from '../stats/moments.js';
import type { Keys } from '../redis/keys.js';
import type { Config } from '../config/env.js';
import { tombstoneTtlMs } from '../pipelines/tombstone.js';
import { callScript } from '../redis/scripts.js';
import { strategyArm, strategyTombstone, type Arm } from './arms.js';
import { clusterTotals, clusteredVariance, type ClusteredVariance } from './units.js';

export interface AgentStats {
  readonly n: number;
  /** Mean of consumed ÷ allocated. */
  readonly utilization: number;
  /** Share of outcomes where the agent used ≥ 95 % of its budget or reported truncation. */
  readonly ceilingHitRate: number;
  readonly truncationRate: number;
  /** Mean quality when the agent hit its ceiling (null when it never did). */
  readonly qualityWhenHit: number | null;
  readonly meanConsumed: number;
  readonly meanAllocated: number;
}

export interface ArmStats {
  readonly count: number;
  readonly quality: Moments;
  readonly cost: Moments & { readonly total: number };
  readonly agents: Record<string, AgentStats>;
  /** On a pipeline with model tiers: the same statistics per agent and served model (`models.<agent>.<model>`). */
  readonly models?: Record<string, Record<string, AgentStats>>;
  /**
   * An experiment arm: units counted for the SRM test (absent on statistics written before units were counted; see
   * src/feedback/units.ts).
   */
  readonly units?: number;
  /**
   * An experiment arm whose unit buckets cover every outcome: the cluster-robust (CR2) variance of the mean of quality
   * and of cost, each as an effective per-outcome variance (N·V, so that `variance / n` is the variance of the mean)
   * with its small-sample degrees of freedom and its non-empty buckets (`ClusteredVariance`), and the number of
   * non-empty buckets of quality. Absent when the arm has outcomes written before buckets were kept (the intervals then
   * use the per-outcome variance). `agents`: the same for each agent's ceiling-hit rate (over the outcomes that
   * reported the agent, and its own non-empty buckets), for the agents whose bucket sums hold all of its outcomes
   * (an agent absent here has outcomes written before the buckets kept ceiling hits: per-outcome variance).
   */
  readonly clustered?: {
    readonly quality?: ClusteredVariance;
    readonly cost?: ClusteredVariance;
    readonly clusters: number;
    readonly agents?: Readonly<Record<string, { readonly ceilingHit?: ClusteredVariance; readonly clusters: number }>>;
  };
}

const f = (v: string | undefined): number => (v === undefined ? 0 : Number(v));

/** Field order of the packed per-agent sums written by apply-outcome.lua. */
export const AGENT_SUM_FIELDS = ['n', 'util', 'consumed', 'allocated', 'trunc', 'hits', 'hit_q'] as const;

/** Decodes one agent's sums, a MessagePack array written by apply-outcome.lua. */
export function unpackAgentSums(packed: Buffer): Record<(typeof AGENT_SUM_FIELDS)[number], number> {
  const raw: unknown = unpack(packed);
  const parts = Array.isArray(raw) ? (raw as unknown[]) : [];
  const out = {} as Record<(typeof AGENT_SUM_FIELDS)[number], number>;
  AGENT_SUM_FIELDS.forEach((name, i) => (out[name] = Number(parts[i] ?? 0)));
  return out;
}

/**
 * Decodes an arm's unit-bucket hash into its clusters and their variances (pure). Each bucket is a MessagePack array
 * [n, Σ quality, c_n, Σ cost, agents?], `agents` a flat array [name, n, hits, name, n, hits, …] of the agents (without
 * `@model`) reported in the bucket's outcomes: how many reported each and how many of those hit its ceiling (absent in
 * buckets written before ceiling hits were kept). `quality`, `cost`: the arm's count and Σ (y − m)² of each from its
 * moments; `agentHits`: each agent's outcome count and ceiling hits from the per-agent sums. The variances need every
 * bucket's own n_b and S_b (CR2 weighs each by its share of the outcomes), so they are computed here from the decoded
 * buckets, not from running sums.
 */
export function clusteredOf(
  quality: { readonly n: number; readonly ss: number },
  cost: { readonly n: number; readonly ss: number },
  buckets: Record<string, Buffer>,
  agentHits: Readonly<Record<string, { readonly n: number; readonly hits: number }>> = {},
): ArmStats['clustered'] {
  const q = { n: [] as number[], s: [] as number[] };
  const c = { n: [] as number[], s: [] as number[] };
  const hits = new Map<string, { n: number[]; s: number[] }>();
  for (const packed of Object.values(buckets)) {
    const raw: unknown = unpack(packed);
    const v = Array.isArray(raw) ? (raw as unknown[]) : [];
    q.n.push(Number(v[0] ?? 0));
    q.s.push(Number(v[1] ?? 0));
    c.n.push(Number(v[2] ?? 0));
    c.s.push(Number(v[3] ?? 0));
    const ag = Array.isArray(v[4]) ? (v[4] as unknown[]) : [];
    for (let i = 0; i + 2 < ag.length; i += 3) {
      const name = String(ag[i]);
      let h = hits.get(name);
      if (!h) hits.set(name, (h = { n: [], s: [] }));
      h.n.push(Number(ag[i + 1]));
      h.s.push(Number(ag[i + 2]));
    }
  }
  // Only buckets that hold every outcome of the arm describe its mean: an arm with outcomes from before buckets were
  // kept falls back to the per-outcome variance. The same per agent, against its count in the per-agent sums.
  const qt = clusterTotals(q);
  if (quality.n === 0 || qt.total !== quality.n) return undefined;
  const qv = clusteredVariance(q, quality.ss);
  const cv = cost.n > 0 && clusterTotals(c).total === cost.n ? clusteredVariance(c, cost.ss) : undefined;
  const agents: Record<string, { ceilingHit?: ClusteredVariance; clusters: number }> = Object.create(null) as Record<string, { ceilingHit?: ClusteredVariance; clusters: number }>;
  for (const [name, a] of Object.entries(agentHits)) {
    const h = hits.get(name);
    if (!h || a.n === 0) continue;
    const ht = clusterTotals(h);
    if (ht.total !== a.n) continue;
    // A 0/1 metric's Σ (y − m)² from its count and hits.
    const ceilingHit = clusteredVariance(h, a.hits - (a.hits * a.hits) / a.n);
    agents[name] = { ...(ceilingHit !== undefined ? { ceilingHit } : {}), clusters: ht.g };
  }
  return { ...(qv !== undefined ? { quality: qv } : {}), ...(cv !== undefined ? { cost: cv } : {}), clusters: qt.g, agents };
}

export function parseArmStats(summary: Record<string, string>, agentHash: Record<string, Buffer>, buckets?: Record<string, Buffer>): ArmStats {
  const n = f(summary.n);
  const byAgent = new Map<string, Record<string, number>>();
  for (const [agent, packed] of Object.entries(agentHash)) byAgent.set(agent, unpackAgentSums(packed));
  // Maps keyed by names a client chose (agents, models): no prototype, so `__proto__` or `constructor` is a name like any other.
  const dict = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;
  const agents = dict<AgentStats>();
  let models: Record<string, Record<string, AgentStats>> | undefined;
  for (const [agent, m] of [...byAgent.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const an = m.n ?? 0;
    const hits = m.hits ?? 0;
    const at = agent.indexOf('@');
    const into = at < 0 ? agents : ((models ??= dict())[agent.slice(0, at)] ??= dict());
    into[at < 0 ? agent : agent.slice(at + 1)] = {
      n: an,
      utilization: an ? (m.util ?? 0) / an : 0,
      ceilingHitRate: an ? hits / an : 0,
      truncationRate: an ? (m.trunc ?? 0) / an : 0,
      qualityWhenHit: hits ? (m.hit_q ?? 0) / hits : null,
      meanConsumed: an ? (m.consumed ?? 0) / an : 0,
      meanAllocated: an ? (m.allocated ?? 0) / an : 0,
    };
  }
  return {
    count: n,
    quality: fromWelford(n, f(summary.q_mean), f(summary.q_m2)),
    cost: { ...fromWelford(f(summary.c_n), f(summary.c_mean), f(summary.c_m2)), total: f(summary.c_sum) },
    agents,
    ...(models ? { models } : {}),
    ...(summary.units !== undefined ? { units: f(summary.units) } : {}),
    ...(() => {
      const c = buckets
        ? clusteredOf(
            { n, ss: f(summary.q_m2) },
            { n: f(summary.c_n), ss: f(summary.c_m2) },
            buckets,
            Object.fromEntries([...byAgent].filter(([k]) => !k.includes('@')).map(([k, m]) => [k, { n: m.n ?? 0, hits: m.hits ?? 0 }])),
          )
        : undefined;
      return c ? { clustered: c } : {};
    })(),
  };
}

export async function readArmStats(redis: Redis, arm: Arm): Promise<ArmStats> {
  const [summary, agents] = await Promise.all([redis.hgetall(arm.summary), redis.hgetallBuffer(arm.agents)]);
  return parseArmStats(summary, agents);
}

/** The feedback domain's reading of the statistics it keeps, for other domains (which never read its keys). */
export interface OutcomeStats {
  /** A strategy's outcome statistics on a pipeline (zero counts when it has none). */
  strategy(pipeline: string, strategyId: string): Promise<ArmStats>;
  /**
   * Deletes a deleted strategy's statistics, and leaves a tombstone of `version` (the version it was deleted at) so
   * that an outcome of a decision it made before the delete, applied later, neither brings them back nor counts
   * for a strategy re-created under the id. Idempotent.
   */
  forget(pipeline: string, strategyId: string, version: number): Promise<void>;
}

export function outcomeStats(deps: { readonly redis: Redis; readonly keys: Keys; readonly config: Pick<Config, 'rewardWindowSeconds' | 'outcomeMarkerGraceSeconds'> }): OutcomeStats {
  return {
    strategy: (pipeline, strategyId) => readArmStats(deps.redis, strategyArm(deps.keys, pipeline, strategyId)),
    async forget(pipeline, strategyId, version) {
      const arm = strategyArm(deps.keys, pipeline, strategyId);
      await callScript(deps.redis, 'tombstoneRaise', [strategyTombstone(deps.keys, pipeline, strategyId), arm.summary, arm.agents], [version, tombstoneTtlMs(deps.config)]);
    },
  };
}
