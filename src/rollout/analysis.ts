import type { ArmStats } from '../feedback/stats-reader.js';
import { clustersOf, clusteredDiffVariance, clusteredVariance, UNIT_MIN_CLUSTERS, type ClusteredVariance } from '../feedback/units.js';
import { fromWelford, type Moments } from '../stats/moments.js';
import { holm } from '../stats/multiple.js';
import { DEFAULT_TUNING_N, sequentialDiff } from '../stats/sequential.js';
import { srmSequential, type SequentialSrmResult } from '../stats/srm.js';
import { welch, type DiffResult, type WelchResult } from '../stats/welch.js';
import { bernoulliMoments, momentsOf, winsorizedMoments } from '../stats/winsorize.js';
import type { Guardrail } from './schema.js';

/**
 * One raw observation: [quality, cost or null, truncated agents, ceiling-hit agents, for a probe's cut arm the cut
 * agent's budget and the base strategy's budget for it from the decision record (else null), the agents the outcome
 * reported usage for, and the unit's bucket (src/feedback/units.ts; null without a unit key)]. Observations written
 * before the last fields existed lack them (and the fifth, when not a probe's).
 */
export type Observation = readonly [
  number,
  number | null,
  readonly string[],
  readonly string[],
  (readonly [number, number] | null)?,
  (readonly string[])?,
  (number | null)?,
];

export interface AgentResult {
  readonly n: number;
  readonly utilization: number;
  readonly ceilingHitRate: number;
  readonly meanAllocated: number;
  /**
   * Quality when this agent reported truncation vs when it reported usage without (from raw observations): outcomes
   * that report no usage for the agent (it did not run, or its usage is unknown) are in neither group.
   */
  readonly truncation?: QualityDrop;
  /** Same split on ceiling hits (truncated, or ≥ 95 % of the budget used). */
  readonly atCeiling?: QualityDrop;
}

export interface QualityDrop {
  readonly nHit: number;
  readonly qualityHit: number | null;
  readonly qualityNotHit: number | null;
  /** qualityNotHit − qualityHit: how much quality is lost when the agent runs out of budget. */
  readonly drop: number | null;
  /**
   * Welch CI of the drop: on the cluster-robust variance with units (their buckets) as clusters when every observation
   * of the split carries its unit's bucket (`PhaseResult.basis.observations`), else on per-outcome variances.
   */
  readonly ci: readonly [number, number] | null;
}

export interface VariantResult {
  readonly variant: string;
  readonly strategy: string;
  readonly n: number;
  readonly quality: { readonly mean: number; readonly stddev: number };
  readonly cost: { readonly n: number; readonly mean: number; readonly stddev: number; readonly winsorizedMean?: number; readonly cap?: number };
  /** Mean quality per dollar of mean cost (null when cost is unknown or zero). */
  readonly qualityPerDollar: number | null;
  readonly agents: Record<string, AgentResult>;
  /** On a pipeline with model tiers: budget metrics per agent and served model. */
  readonly models?: Record<string, Record<string, { readonly n: number; readonly utilization: number; readonly ceilingHitRate: number; readonly meanAllocated: number }>>;
}

export interface Comparison {
  readonly variant: string;
  readonly metric: 'quality' | 'cost';
  readonly welch: WelchResult | null;
  readonly sequential: DiffResult | null;
  /** Holm-adjusted fixed-horizon p-value across every goal comparison of the phase. */
  readonly pHolm: number | null;
}

/** Per-agent budget metrics of a variant against control (secondary: not in the Holm family). */
export interface AgentComparison {
  readonly variant: string;
  readonly agent: string;
  /** Difference in mean allocated budget (tokens) and in mean utilization (consumed ÷ allocated). */
  readonly budgetDiff: number;
  readonly utilizationDiff: number;
  /**
   * Difference in ceiling-hit rate with fixed-horizon and always-valid intervals: on the cluster-robust variance with
   * units as clusters (`PhaseResult.basis.ceilingHit`; the always-valid interval from UNIT_MIN_CLUSTERS units per arm
   * on), else on Bernoulli (per-outcome) moments.
   */
  readonly ceilingHit: { readonly welch: WelchResult | null; readonly sequential: DiffResult | null };
}

export interface PhaseResult {
  readonly phase: number;
  readonly variants: VariantResult[];
  readonly comparisons: Comparison[];
  readonly agentComparisons: AgentComparison[];
  /**
   * The sequential SRM test on the phase's unit counts (always valid; see src/stats/srm.ts); on a phase whose
   * statistics were written before units were counted, on its outcome counts (`basis.srm`).
   */
  readonly srm: SequentialSrmResult | null;
  /**
   * What the phase's tests count and how their variances are estimated: `srm` units (each unit once per phase) or
   * outcomes (statistics written before units were counted); `variance` units (cluster-robust, units as clusters,
   * for quality and cost), or outcomes (the per-outcome variance: statistics without unit buckets, or some arm with
   * outcomes written before them); `ceilingHit` the same for the agents' ceiling-hit rates (guardrails and agent
   * comparisons: units when every arm's buckets hold every agent's outcomes); `observations` the same for what is
   * computed from raw observations (winsorized cost comparisons, quality drops: units when every observation read
   * carries its unit's bucket).
   */
  readonly basis: {
    readonly srm: 'units' | 'outcomes';
    readonly variance: 'units' | 'outcomes';
    readonly ceilingHit: 'units' | 'outcomes';
    readonly observations: 'units' | 'outcomes';
  };
}

export interface AnalysisInput {
  readonly phase: number;
  readonly variants: readonly { readonly name: string; readonly strategy: string; readonly weight: number }[];
  readonly control: string;
  readonly alpha: number;
  readonly arms: ReadonlyMap<string, ArmStats>;
  readonly obs?: ReadonlyMap<string, readonly Observation[]>;
  /**
   * Cap cost at this quantile before comparing (off when undefined): one cap for both arms of a comparison, the
   * quantile of their pooled observations, and for each variant's own winsorized mean the quantile of every arm's.
   */
  readonly winsorize?: number;
  readonly tuningN?: number;
}

/**
 * The moments the intervals use for an arm's metric (pure): the per-outcome mean and n, with the variance replaced by
 * the cluster-robust one when the arm keeps unit buckets (its effective per-outcome variance N·V, see
 * src/feedback/units.ts), with its small-sample degrees of freedom for the Welch interval and its clusters.
 */
export function testMoments(m: Moments, c: ClusteredVariance | undefined): Moments & { df?: number; clusters?: number } {
  if (c === undefined || m.n < 2) return m;
  const sd = Math.sqrt(c.variance);
  return { ...m, variance: c.variance, stddev: sd, stderr: sd / Math.sqrt(m.n), df: c.df, clusters: c.clusters };
}

/**
 * An arm that keeps unit buckets but has fewer than UNIT_MIN_CLUSTERS clusters yet: no always-valid interval and no
 * guardrail judgement (the fixed-horizon Welch interval is given, on the variance's small-sample degrees of freedom).
 */
export const tooFewUnits = (arm: ArmStats): boolean => arm.clustered !== undefined && arm.clustered.clusters < UNIT_MIN_CLUSTERS;

/**
 * An arm on unit buckets whose outcomes all come from one unit (pure): there is no variance between units to estimate,
 * and the per-outcome variance (what `testMoments` falls back to) would treat one unit's outcomes as independent, so
 * its comparisons give no interval at all (`welch: null`), as a probe's elasticity does.
 */
export const oneUnit = (arm: ArmStats): boolean => arm.count > 0 && arm.clustered !== undefined && arm.clustered.clusters < 2;

const qualityForTest = (arm: ArmStats): Moments => testMoments(arm.quality, arm.clustered?.quality);
const costForTest = (arm: ArmStats): Moments => testMoments(arm.cost, arm.clustered?.cost);

/** An agent's ceiling hits in the arm's unit buckets (its cluster-robust variance and clusters), if they hold all of them. */
const agentUnits = (arm: ArmStats, agent: string) => (arm.clustered?.agents && Object.hasOwn(arm.clustered.agents, agent) ? arm.clustered.agents[agent] : undefined);

/**
 * An agent's ceiling-hit rate for the tests (pure): Bernoulli moments over the outcomes that reported the agent, with
 * the variance replaced by the cluster-robust one when the arm's buckets hold all of them (`clustered.agents`).
 */
export function ceilingHitForTest(arm: ArmStats, agent: string): Moments {
  const a = Object.hasOwn(arm.agents, agent) ? arm.agents[agent] : undefined;
  if (!a) return fromWelford(0, 0, 0);
  const c = agentUnits(arm, agent);
  return testMoments(bernoulliMoments(Math.round(a.ceilingHitRate * a.n), a.n), c?.ceilingHit);
}

/** An agent's ceiling hits are on unit buckets with fewer than UNIT_MIN_CLUSTERS clusters yet (see tooFewUnits). */
const tooFewAgentUnits = (arm: ArmStats, agent: string): boolean => {
  const c = agentUnits(arm, agent);
  return c !== undefined && c.clusters < UNIT_MIN_CLUSTERS;
};

/** An agent's ceiling hits are on unit buckets of one unit only: no interval (see oneUnit). */
const oneAgentUnit = (arm: ArmStats, agent: string): boolean => {
  const c = agentUnits(arm, agent);
  return c !== undefined && c.clusters < 2;
};

/** Every agent of every arm with outcomes has its ceiling hits in unit buckets (else a per-outcome fallback). */
function ceilingHitOnUnits(arms: readonly ArmStats[]): boolean {
  const withData = arms.filter((a) => a.count > 0);
  return withData.length > 0 && withData.every((a) => a.clustered !== undefined && Object.entries(a.agents).every(([name, s]) => s.n === 0 || (a.clustered!.agents !== undefined && Object.hasOwn(a.clustered!.agents, name))));
}

/**
 * The SRM counts of a phase (pure): units per variant when the phase's statistics count units (any arm has a `units`
 * field: every outcome since then counted its unit at its first), else outcomes (statistics written before).
 */
export function srmCounts(variants: readonly { readonly name: string }[], arms: ReadonlyMap<string, ArmStats>): { counts: number[]; basis: 'units' | 'outcomes' } {
  const byUnits = variants.some((v) => arms.get(v.name)?.units !== undefined);
  return { counts: variants.map((v) => { const a = arms.get(v.name); return byUnits ? (a?.units ?? 0) : (a?.count ?? 0); }), basis: byUnits ? 'units' : 'outcomes' };
}

/** Quality and rates lie in [0, 1]: the range the sequential interval's variance floor assumes for them. */
const UNIT_RANGE = 1;

const EMPTY: ArmStats = {
  count: 0,
  quality: fromWelford(0, 0, 0),
  cost: { ...fromWelford(0, 0, 0), total: 0 },
  agents: {},
};

/** The unit bucket an observation carries (undefined: written before buckets were, or no unit key). */
const bucketOf = (o: Observation): number | undefined => (typeof o[6] === 'number' ? o[6] : undefined);

function qualityDrop(agent: string, obs: readonly Observation[], field: 2 | 3, alpha: number): QualityDrop {
  const hit: number[] = [];
  const not: number[] = [];
  // (bucket, group: 0 not hit, 1 hit, quality) while every observation carries a bucket.
  let clusters: [number, 0 | 1, number][] | undefined = [];
  for (const o of obs) {
    // Only outcomes that reported this agent's usage: one where it did not run says nothing about its budget. (An
    // observation from before the reported agents were recorded counts as it did then.)
    const reported = o[5];
    if (reported && !reported.includes(agent)) continue;
    const isHit = o[field].includes(agent);
    (isHit ? hit : not).push(o[0]);
    const b = bucketOf(o);
    if (b === undefined) clusters = undefined;
    else clusters?.push([b, isHit ? 1 : 0, o[0]]);
  }
  const mh = momentsOf(hit);
  const mn = momentsOf(not);
  const w = clusters ? clusteredDropCi(mn, mh, clusters, alpha, [sumSq(mn), sumSq(mh)]) : welch(mn, mh, alpha);
  return {
    nHit: hit.length,
    qualityHit: hit.length ? mh.mean : null,
    qualityNotHit: not.length ? mn.mean : null,
    drop: hit.length && not.length ? mn.mean - mh.mean : null,
    ci: w ? w.ci : null,
  };
}

/** Σ (y − mean)² of a sample, from its moments (the sample variance times n − 1). */
const sumSq = (m: Moments): number => m.variance * Math.max(0, m.n - 1);

/**
 * The Welch interval of quality when not hit − when hit, both groups from one arm, with units as clusters (pure): a
 * unit's outcomes fall in both groups, so the variance is `clusteredDiffVariance`'s (the CR2 variance of the
 * difference: each group's CR2 variance less twice their covariance over shared buckets), and each group counts its
 * own small-sample degrees of freedom (`clusterDf` over its buckets) in the Welch–Satterthwaite formula. With one
 * outcome per bucket it is the per-outcome Welch interval.
 */
function clusteredDropCi(not: Moments, hit: Moments, pairs: readonly (readonly [number, 0 | 1, number])[], alpha: number, ss: readonly [number, number]): { ci: readonly [number, number] } | null {
  if (not.n < 2 || hit.n < 2) return null;
  const d = clusteredDiffVariance(pairs, ss);
  if (!d) return null;
  // Each group's part as a moment (effective per-outcome variance n·v) for the degrees of freedom; then the interval's
  // standard error from the whole variance, covariance included.
  const w = welch(testMoments(not, { variance: not.n * d.va, df: d.dfa, clusters: d.ga }), testMoments(hit, { variance: hit.n * d.vb, df: d.dfb, clusters: d.gb }), alpha);
  if (!w) return null;
  if (w.se === 0) return w; // no variance in either group (then none in the difference either)
  const half = ((w.ci[1] - w.ci[0]) / 2 / w.se) * Math.sqrt(d.v);
  return { ci: [w.diff - half, w.diff + half] };
}

/** Costs of an arm's observations, each with its unit's bucket (undefined when the observation carries none). */
const costsOf = (obs: readonly Observation[] | undefined): [number, number | undefined][] => (obs ?? []).flatMap((o) => (o[1] === null ? [] : [[o[1], bucketOf(o)] as [number, number | undefined]]));
const values = (costs: readonly (readonly [number, number | undefined])[]): number[] => costs.map((c) => c[0]);

/** The q-quantile of the pooled costs of some arms: the one cap they are all winsorized at (undefined: off, or no cost). */
function pooledCap(samples: readonly (readonly number[])[], q: number | undefined): number | undefined {
  if (q === undefined) return undefined;
  const all = samples.flat();
  return all.length ? winsorizedMoments(all, q).cap : undefined;
}

/**
 * An arm's cost moments with every cost above `cap` set to it (undefined: no cap, or no cost to cap). When every cost
 * carries its unit's bucket, the variance is the cluster-robust one (units as clusters, with `clusters`); else per
 * outcome.
 */
function costMoments(arm: ArmStats, costs: readonly (readonly [number, number | undefined])[], cap: number | undefined): (Moments & { cap?: number; clusters?: number }) | undefined {
  if (cap === undefined || costs.length === 0 || arm.cost.n === 0) return undefined;
  const capped = costs.map(([c, b]) => [Math.min(c, cap), b] as const);
  const m = momentsOf(capped.map((c) => c[0]));
  if (capped.some((c) => c[1] === undefined)) return { ...m, cap };
  const cl = clustersOf(capped.map(([c, b]) => [b!, c] as const));
  return { ...testMoments(m, clusteredVariance(cl, sumSq(m))), cap, clusters: cl.n.length };
}

/**
 * Results of one phase (pure): per variant n, quality, cost, quality per dollar, per-agent utilization,
 * ceiling-hit rate and truncation-correlated quality drop; each non-control variant against control
 * on the goal metrics (quality, cost) with fixed-horizon Welch CIs, always-valid sequential CIs and
 * Holm-adjusted p-values; and the sequential SRM test of outcome counts against the weights.
 */
export function analyzePhase(input: AnalysisInput): PhaseResult {
  const alpha = input.alpha;
  const tuningN = input.tuningN ?? DEFAULT_TUNING_N;
  // Winsorizing caps every arm at the same cost: capping each at its own quantile would compare arms cut at different
  // heights (a heavier tail cut lower), which is a difference of the caps, not of the strategies.
  const phaseCap = pooledCap(input.variants.map((v) => values(costsOf(input.obs?.get(v.name)))), input.winsorize);
  const variants: VariantResult[] = input.variants.map((v) => {
    const arm = input.arms.get(v.name) ?? EMPTY;
    const obs = input.obs?.get(v.name);
    const w = costMoments(arm, costsOf(obs), phaseCap);
    const agents: Record<string, AgentResult> = {};
    for (const [name, a] of Object.entries(arm.agents)) {
      agents[name] = {
        n: a.n,
        utilization: a.utilization,
        ceilingHitRate: a.ceilingHitRate,
        meanAllocated: a.meanAllocated,
        ...(obs && obs.length ? { truncation: qualityDrop(name, obs, 2, alpha), atCeiling: qualityDrop(name, obs, 3, alpha) } : {}),
      };
    }
    return {
      variant: v.name,
      strategy: v.strategy,
      n: arm.count,
      quality: { mean: arm.quality.mean, stddev: arm.quality.stddev },
      cost: {
        n: arm.cost.n,
        mean: arm.cost.mean,
        stddev: arm.cost.stddev,
        ...(w ? { winsorizedMean: w.mean, cap: w.cap } : {}),
      },
      qualityPerDollar: arm.cost.n > 0 && arm.cost.mean > 0 ? arm.quality.mean / arm.cost.mean : null,
      agents,
      ...(arm.models
        ? {
            models: Object.fromEntries(
              Object.entries(arm.models).map(([agent, byModel]) => [
                agent,
                Object.fromEntries(Object.entries(byModel).map(([m, a]) => [m, { n: a.n, utilization: a.utilization, ceilingHitRate: a.ceilingHitRate, meanAllocated: a.meanAllocated }])),
              ]),
            ),
          }
        : {}),
    };
  });

  const control = input.arms.get(input.control) ?? EMPTY;
  const controlCosts = costsOf(input.obs?.get(input.control));
  const raw: Omit<Comparison, 'pHolm'>[] = [];
  for (const v of input.variants) {
    if (v.name === input.control) continue;
    const arm = input.arms.get(v.name) ?? EMPTY;
    const few = tooFewUnits(arm) || tooFewUnits(control);
    const single = oneUnit(arm) || oneUnit(control);
    const q = qualityForTest(arm);
    const qc = qualityForTest(control);
    raw.push({ variant: v.name, metric: 'quality', welch: single ? null : welch(q, qc, alpha), sequential: few ? null : sequentialDiff(q, qc, alpha, tuningN, UNIT_RANGE) });
    const costs = costsOf(input.obs?.get(v.name));
    const cap = pooledCap([values(costs), values(controlCosts)], input.winsorize);
    // Winsorized costs come from the raw observations, which carry their unit's bucket: the same clusters as above.
    const wt = costMoments(arm, costs, cap);
    const wc = costMoments(control, controlCosts, cap);
    const cost = wt ?? costForTest(arm);
    const controlCost = wc ?? costForTest(control);
    const fewW = [wt, wc].some((m) => m?.clusters !== undefined && m.clusters < UNIT_MIN_CLUSTERS);
    raw.push({ variant: v.name, metric: 'cost', welch: single ? null : welch(cost, controlCost, alpha), sequential: few || fewW ? null : sequentialDiff(cost, controlCost, alpha, tuningN) });
  }
  const tested = raw.map((c, i) => ({ i, p: c.welch?.pValue })).filter((x): x is { i: number; p: number } => x.p !== undefined);
  const adj = holm(tested.map((x) => x.p));
  const pHolm = new Map(tested.map((x, k) => [x.i, adj[k]!]));
  const comparisons = raw.map((c, i) => ({ ...c, pHolm: pHolm.get(i) ?? null }));

  const agentComparisons: AgentComparison[] = [];
  for (const v of input.variants) {
    if (v.name === input.control) continue;
    const arm = input.arms.get(v.name) ?? EMPTY;
    for (const [agent, a] of Object.entries(arm.agents)) {
      const c = control.agents[agent];
      if (!c) continue;
      const mt = ceilingHitForTest(arm, agent);
      const mc = ceilingHitForTest(control, agent);
      const few = tooFewAgentUnits(arm, agent) || tooFewAgentUnits(control, agent);
      const single = oneAgentUnit(arm, agent) || oneAgentUnit(control, agent);
      agentComparisons.push({
        variant: v.name,
        agent,
        budgetDiff: a.meanAllocated - c.meanAllocated,
        utilizationDiff: a.utilization - c.utilization,
        ceilingHit: { welch: single ? null : welch(mt, mc, alpha), sequential: few ? null : sequentialDiff(mt, mc, alpha, tuningN, UNIT_RANGE) },
      });
    }
  }

  const { counts, basis } = srmCounts(input.variants, input.arms);
  const withData = input.variants.map((v) => input.arms.get(v.name)).filter((a): a is ArmStats => a !== undefined && a.count > 0);
  const clustered = withData.length > 0 && withData.every((a) => a.clustered !== undefined);
  return {
    phase: input.phase,
    variants,
    comparisons,
    agentComparisons,
    srm: srmSequential(counts, input.variants.map((v) => v.weight)),
    basis: {
      srm: basis,
      variance: clustered ? 'units' : 'outcomes',
      ceilingHit: ceilingHitOnUnits(withData) ? 'units' : 'outcomes',
      observations: observationsOnUnits(input.variants.map((v) => input.obs?.get(v.name))) ? 'units' : 'outcomes',
    },
  };
}

/** Every observation read carries its unit's bucket (and there is at least one). */
function observationsOnUnits(lists: readonly (readonly Observation[] | undefined)[]): boolean {
  const all = lists.flatMap((l) => l ?? []);
  return all.length > 0 && all.every((o) => bucketOf(o) !== undefined);
}

/** Default per-arm sample size before a guardrail is judged. */
export const GUARDRAIL_MIN_SAMPLES = 50;

export interface GuardrailCheck {
  readonly guardrail: Guardrail;
  readonly variant: string;
  readonly judged: boolean;
  readonly breached: boolean;
  /** Regression (positive = worse than control), its always-valid interval, and the tolerance. */
  readonly regression?: number;
  readonly ci?: readonly [number, number];
  readonly tolerance?: number;
  readonly n?: readonly [number, number];
}

/**
 * The width of a guardrail metric's range, for the variance floor of the sequential interval (src/stats/sequential.ts):
 * quality and a ceiling-hit rate lie in [0, 1]; cost is unbounded (undefined: the floor scales with the arms' means).
 */
function metricRange(g: Guardrail): number | undefined {
  return g.metric === 'cost' ? undefined : UNIT_RANGE;
}

function metricMoments(arm: ArmStats, g: Guardrail): Moments {
  if (g.metric === 'quality') return qualityForTest(arm);
  if (g.metric === 'cost') return costForTest(arm);
  return ceilingHitForTest(arm, g.agent ?? '');
}

/**
 * Judges every guardrail for every non-control variant with the always-valid sequential interval
 * (pure). The regression is oriented so positive is worse (quality: control − variant; cost and
 * ceiling-hit rate: variant − control). A guardrail is breached when the whole interval lies above
 * the tolerance: under "regression ≤ tolerance" that happens with probability ≤ α however often the
 * job looks.
 */
export function checkGuardrails(
  guardrails: readonly Guardrail[],
  variants: readonly { readonly name: string }[],
  control: string,
  arms: ReadonlyMap<string, ArmStats>,
  alpha: number,
  tuningN = DEFAULT_TUNING_N,
): GuardrailCheck[] {
  const out: GuardrailCheck[] = [];
  const c = arms.get(control) ?? EMPTY;
  for (const g of guardrails) {
    const cm = metricMoments(c, g);
    for (const v of variants) {
      if (v.name === control) continue;
      const t = arms.get(v.name) ?? EMPTY;
      const tm = metricMoments(t, g);
      const min = g.minSamples ?? GUARDRAIL_MIN_SAMPLES;
      // A guardrail on unit statistics also waits for UNIT_MIN_CLUSTERS units per arm (for a ceiling-hit rate, units
      // whose outcomes reported the agent).
      const few = g.metric === 'ceilingHitRate' ? tooFewAgentUnits(t, g.agent ?? '') || tooFewAgentUnits(c, g.agent ?? '') : tooFewUnits(t) || tooFewUnits(c);
      if (tm.n < min || cm.n < min || few) {
        out.push({ guardrail: g, variant: v.name, judged: false, breached: false, n: [tm.n, cm.n] });
        continue;
      }
      const s = sequentialDiff(tm, cm, alpha, tuningN, metricRange(g));
      if (!s) continue;
      const sign = g.metric === 'quality' ? -1 : 1;
      const lo = sign * (sign > 0 ? s.ci[0] : s.ci[1]);
      const hi = sign * (sign > 0 ? s.ci[1] : s.ci[0]);
      const tolerance = (g.maxRegression ?? 0) * (g.relative ? Math.abs(cm.mean) : 1);
      out.push({
        guardrail: g,
        variant: v.name,
        judged: true,
        breached: lo > tolerance,
        regression: sign * s.diff,
        ci: [lo, hi],
        tolerance,
        n: [tm.n, cm.n],
      });
    }
  }
  return out;
}

/** One agent's quality elasticity from a probe: relative quality change per relative budget change. */
export interface Elasticity {
  readonly agent: string;
  readonly variant: string;
  /** Mean budget the cut arm gave the agent ÷ what the base strategy would have given it. */
  readonly budgetRatio: number | null;
  /** Where the budget ratio comes from: the decision records (the cut as allocated) or usage reports. */
  readonly budgetSource?: 'decisions' | 'usage';
  readonly qualityDiff: number | null;
  /** (Δq / q_control) ÷ (Δb / b_control): 1 means quality falls in proportion to the cut. */
  readonly elasticity: number | null;
  /**
   * The quality difference's Welch interval scaled by the cut (the quality comparison's interval of the same arms): on
   * the cluster-robust variance with units as clusters when both arms' unit buckets hold all their outcomes, else on
   * per-outcome variances (`basis`).
   */
  readonly ci: readonly [number, number] | null;
  /**
   * How the interval's variance is estimated: `units` (cluster-robust, units as clusters: both arms' unit buckets hold
   * every outcome), or `outcomes` (per-outcome variances: an arm has outcomes written before unit buckets were kept).
   * Absent in results computed before it was reported (then per outcome).
   */
  readonly basis?: 'units' | 'outcomes';
  /** null when the elasticity cannot be measured yet: `unavailable` says why. Never "not critical" by default. */
  readonly critical: boolean | null;
  readonly unavailable?: string;
  readonly rank?: number;
}

/** Elasticity above which (lower CI bound) an agent is marked on the critical path. */
export const CRITICAL_ELASTICITY = 0.05;

/** Σ cut ÷ Σ base over the cut arm's observations that carry the decision's budgets (null without any). */
function decisionBudgetRatio(obs: readonly Observation[] | undefined): number | null {
  let cut = 0;
  let base = 0;
  for (const o of obs ?? []) {
    const b = o[4];
    if (!b) continue;
    cut += b[0];
    base += b[1];
  }
  return base > 0 ? cut / base : null;
}

/**
 * Critical-path estimate from a probe (pure): for each cut agent, quality elasticity with a Welch
 * interval scaled by the (fixed) relative budget cut; agents ranked by elasticity; an agent is critical
 * when its interval's lower bound exceeds CRITICAL_ELASTICITY. The Welch interval is the quality comparison's: a unit
 * is in one arm only, so the two arms are independent and each arm's variance of its mean is its cluster-robust one
 * (units as clusters, `qualityForTest`) when its unit buckets hold all of its outcomes, else per outcome; `basis` says
 * `units` when both arms are on units. An arm on units with a single cluster has no variance estimate: unavailable.
 * The budget cut is read from the decision
 * records (each cut decision records the agent's budget and what the base strategy would have given it),
 * so it needs no usage reports; usage-reported budgets are the fallback for observations without it.
 * When a measure is missing the agent is `critical: null` with the reason, not "not critical".
 */
export function elasticities(
  cuts: readonly { agent: string; variant: string }[],
  control: string,
  arms: ReadonlyMap<string, ArmStats>,
  alpha: number,
  obs?: ReadonlyMap<string, readonly Observation[]>,
): Elasticity[] {
  const c = arms.get(control) ?? EMPTY;
  const out: Elasticity[] = cuts.map(({ agent, variant }) => {
    const t = arms.get(variant) ?? EMPTY;
    const fromDecisions = decisionBudgetRatio(obs?.get(variant));
    const bc = c.agents[agent]?.meanAllocated;
    const bt = t.agents[agent]?.meanAllocated;
    const fromUsage = bc && bt !== undefined ? bt / bc : null;
    const ratio = fromDecisions ?? fromUsage;
    const source = fromDecisions !== null ? { budgetSource: 'decisions' as const } : fromUsage !== null ? { budgetSource: 'usage' as const } : {};
    const basis = t.clustered !== undefined && c.clustered !== undefined ? ('units' as const) : ('outcomes' as const);
    const w = welch(qualityForTest(t), qualityForTest(c), alpha);
    const none = (why: string): Elasticity => ({ agent, variant, budgetRatio: ratio, ...source, qualityDiff: w ? w.diff : null, elasticity: null, ci: null, basis, critical: null, unavailable: why });
    if (t.count < 2 || c.count < 2) return none(`needs at least 2 outcomes in ${control} and in ${variant} (has ${c.count} and ${t.count})`);
    // One unit's outcomes (one cluster) say nothing of the variance between units: the per-outcome one would be far too small.
    if (oneUnit(t) || oneUnit(c)) return none(`needs outcomes from at least 2 units (unit buckets) in ${control} and in ${variant} (has ${c.clustered?.clusters ?? 'no buckets'} and ${t.clustered?.clusters ?? 'no buckets'})`);
    if (ratio === null) return none(`no budget for ${agent} in ${variant}'s decision records or usage reports`);
    if (ratio >= 1) return none(`the cut did not reduce ${agent}'s budget (budget ratio ${ratio.toFixed(3)}: already at its minTokens?)`);
    if (!w) return none(`quality of ${control} and ${variant} has no variance yet`);
    if (c.quality.mean === 0) return none(`${control}'s mean quality is 0: a relative change is undefined`);
    const scale = c.quality.mean * (ratio - 1);
    const e = w.diff / scale;
    const a = w.ci[0] / scale;
    const b = w.ci[1] / scale;
    const ci: [number, number] = [Math.min(a, b), Math.max(a, b)];
    return { agent, variant, budgetRatio: ratio, ...source, qualityDiff: w.diff, elasticity: e, ci, basis, critical: ci[0] > CRITICAL_ELASTICITY };
  });
  const ranked = out.filter((e) => e.elasticity !== null).sort((x, y) => y.elasticity! - x.elasticity!);
  return out.map((e) => ({ ...e, ...(e.elasticity !== null ? { rank: ranked.indexOf(e) + 1 } : {}) }));
}
