/**
 * Error rates of the rollout statistics under continuous monitoring, on generated traffic (seeded): A/A experiments
 * (both arms the same distribution) watched by a guardrail with `maxRegression: 0` at the rollout job's cadence, the
 * sequential SRM test on the same counts, and the coverage of the reported intervals on A/B experiments with a known
 * true effect. Every number goes through the production functions (`checkGuardrails`, `analyzePhase`,
 * `srmSequential`), fed Welford moments as the outcome script keeps them.
 *
 *   node --import tsx bench/rollout-aa.ts [--sims 300] [--outcomes 10000] [--look 20] [--alpha 0.05] [--seed 1] [--only name]
 *
 * Each simulated experiment receives `outcomes` outcomes; a unit is assigned by a fair coin (as the variant hash does),
 * and the job looks after every `look` outcomes (10 s at 2 outcomes/s), from the guardrail's default minSamples (50
 * per arm) on. Scenarios draw quality, cost or an agent's ceiling hit from skewed, heavy-tailed, binary, zero-heavy and
 * default-reward distributions; `clustered` scenarios let each unit report several outcomes (a unit effect shared by
 * them), which the intervals and the SRM test, built for independent outcomes, do not model.
 *
 * Every number is printed three times, from the same runs: under the per-outcome rule (outcome counts for SRM,
 * per-outcome variances: the statistics as kept before units were) and under two unit rules (each unit counted once per
 * phase for SRM, and the cluster-robust variance with units hashed into UNIT_BUCKETS buckets per arm as clusters, as
 * apply-outcome.lua keeps them and `parseArmStats` reads them; the Bloom bitmap's thinning is not simulated: it drops
 * units independently of their arm): `units CR1`, the variance before CR2 (G/(G − 1) · Σ_b (S_b − m·n_b)² / N², with
 * min(N, G) − 1 degrees of freedom), and `units CR2`, the reader's (src/feedback/units.ts). Ceiling-hit guardrails use
 * per-outcome variances under every rule here (bench/unit-guardrails.ts measures them, the winsorized cost and the
 * quality drops, on units).
 *
 * Printed per scenario: the share of A/A experiments a guardrail ever rolled back (breach: the whole always-valid
 * interval above the tolerance 0; nominal ≤ α/2, one side of a two-sided 1 − α interval) and the share whose
 * sequential interval ever excluded 0 (either side; nominal ≤ α), each with its ratio to the nominal level; the share
 * of experiments the SRM test ever flagged (nominal ≤ 0.02); and on the A/B runs the coverage of the true effect by
 * the final fixed-horizon Welch interval (nominal 1 − α) and by the sequential interval at every look at once (≥ 1 − α).
 */
import { mulberry32 } from '../src/learner/rng.js';
import type { ArmStats } from '../src/feedback/stats-reader.js';
import { analyzePhase, checkGuardrails } from '../src/rollout/analysis.js';
import type { Guardrail } from '../src/rollout/schema.js';
import { UNIT_BUCKETS } from '../src/feedback/units.js';
import { fromWelford } from '../src/stats/moments.js';
import { ClusterBuckets } from '../test/helpers/cluster-buckets.js';
import { Welford } from '../test/helpers/welford.js';
import { SRM_SEQUENTIAL_ALPHA, srmSequential } from '../src/stats/srm.js';
import { clip, flag, geometric, normal, type Rand } from './lib.js';

const sims = Number(flag('sims', '300'));
const outcomes = Number(flag('outcomes', '10000'));
const look = Number(flag('look', '20'));
const alpha = Number(flag('alpha', '0.05'));
const seed = Number(flag('seed', '1'));
const only = flag('only', '');


/** One outcome of one unit: quality in [0, 1], cost ≥ 0, whether the watched agent hit its ceiling. */
interface Draw {
  quality: number;
  cost: number;
  hit: boolean;
}

interface Scenario {
  readonly name: string;
  readonly metric: Guardrail['metric'];
  /** Draws one outcome; `unit` is a per-unit effect in [−1, 1] shared by a unit's outcomes (0 when unclustered). */
  readonly draw: (u: Rand, unit: number) => Draw;
  /** Outcomes per unit (1: every outcome its own unit). */
  readonly perUnit?: (u: Rand) => number;
  /** For the A/B coverage runs: the treatment's shift of the metric (added to quality or cost). */
  readonly effect: number;
}

const base = (q: number, c: number, hit = false): Draw => ({ quality: q, cost: c, hit });

const SCENARIOS: Scenario[] = [
  { name: 'quality normal (clipped)', metric: 'quality', draw: (u) => base(clip(0.7 + 0.15 * normal(u)), 0.01), effect: 0.02 },
  { name: 'quality binary p=0.3', metric: 'quality', draw: (u) => base(u() < 0.3 ? 1 : 0, 0.01), effect: 0.03 },
  { name: 'quality binary p=0.98', metric: 'quality', draw: (u) => base(u() < 0.98 ? 1 : 0, 0.01), effect: -0.02 },
  { name: 'quality skewed u^8', metric: 'quality', draw: (u) => base(u() ** 8, 0.01), effect: 0.02 },
  { name: 'quality 90 % zeros', metric: 'quality', draw: (u) => base(u() < 0.9 ? 0 : u(), 0.01), effect: 0.01 },
  { name: 'quality 80 % default reward 0.5', metric: 'quality', draw: (u) => base(u() < 0.8 ? 0.5 : u(), 0.01), effect: 0.01 },
  { name: 'cost lognormal σ=1', metric: 'cost', draw: (u) => base(0.7, 0.01 * Math.exp(normal(u))), effect: 0.002 },
  { name: 'cost lognormal σ=2', metric: 'cost', draw: (u) => base(0.7, 0.01 * Math.exp(2 * normal(u))), effect: 0.01 },
  { name: 'cost Pareto α=1.5', metric: 'cost', draw: (u) => base(0.7, 0.01 * (1 - u()) ** (-1 / 1.5)), effect: 0.005 },
  { name: 'cost 95 % zeros', metric: 'cost', draw: (u) => base(0.7, u() < 0.95 ? 0 : 0.2 * Math.exp(normal(u))), effect: 0.002 },
  { name: 'ceiling hits p=0.01', metric: 'ceilingHitRate', draw: (u) => base(0.7, 0.01, u() < 0.01), effect: 0 },
  { name: 'ceiling hits p=0.2', metric: 'ceilingHitRate', draw: (u) => base(0.7, 0.01, u() < 0.2), effect: 0 },
  {
    name: 'clustered: 2 outcomes per unit, independent quality',
    metric: 'quality',
    draw: (u) => base(clip(0.7 + 0.15 * normal(u)), 0.01),
    perUnit: () => 2,
    effect: 0.02,
  },
  {
    name: 'clustered quality (5 per unit, unit sd 0.15)',
    metric: 'quality',
    draw: (u, unit) => base(clip(0.7 + 0.15 * unit + 0.1 * normal(u)), 0.01),
    perUnit: geometric(5),
    effect: 0.02,
  },
  {
    name: 'clustered cost (20 per unit)',
    metric: 'cost',
    draw: (u, unit) => base(0.7, 0.01 * Math.exp(unit + 0.5 * normal(u))),
    perUnit: geometric(20),
    effect: 0.002,
  },
];

interface Arm {
  q: Welford;
  c: Welford;
  hits: number;
  units: number;
  bq: ClusterBuckets;
  bc: ClusterBuckets;
}
const newArm = (): Arm => ({ q: new Welford(), c: new Welford(), hits: 0, units: 0, bq: new ClusterBuckets(), bc: new ClusterBuckets() });
/**
 * The arm's statistics under a unit rule: unit count and cluster-robust variances, CR1 with min(N, G) − 1 degrees of
 * freedom (`cr1`: before) or CR2 with its small-sample degrees of freedom (the reader's).
 */
const unitStats = (a: Arm, cr1: boolean): ArmStats => {
  const quality = cr1 ? a.bq.cr1() : a.bq.cr2();
  const cost = cr1 ? a.bc.cr1() : a.bc.cr2();
  return {
    ...armStats(a),
    units: a.units,
    clustered: { ...(quality !== undefined ? { quality } : {}), ...(cost !== undefined ? { cost } : {}), clusters: a.bq.g },
  };
};
const armStats = (a: Arm): ArmStats => ({
  count: a.q.n,
  quality: fromWelford(a.q.n, a.q.mean, a.q.m2),
  cost: { ...fromWelford(a.c.n, a.c.mean, a.c.m2), total: a.c.mean * a.c.n },
  agents: {
    reasoner: {
      n: a.q.n,
      utilization: 0.5,
      ceilingHitRate: a.q.n ? a.hits / a.q.n : 0,
      truncationRate: 0,
      qualityWhenHit: null,
      meanConsumed: 0,
      meanAllocated: 1000,
    },
  },
});

interface Rule {
  breached: boolean;
  excluded: boolean;
  srm: boolean;
  welchCovers: boolean | null;
  seqCoversAll: boolean;
}
/** One run under the per-outcome rule and under the unit rules (CR1, CR2). */
type Run = Rule[];
const RULES = ['per-outcome', 'units CR1', 'units CR2'] as const;

/** One experiment of `outcomes` outcomes; `effect` shifts the treatment's metric (0: A/A). */
function runOne(s: Scenario, u: Rand, effect: number): Run {
  const arms = [newArm(), newArm()];
  const g: Guardrail = { metric: s.metric, maxRegression: 0, ...(s.metric === 'ceilingHitRate' ? { agent: 'reasoner' } : {}) };
  const variants = [
    { name: 'control', strategy: 'a', weight: 1 },
    { name: 'treatment', strategy: 'b', weight: 1 },
  ];
  const out: Run = RULES.map(() => ({ breached: false, excluded: false, srm: false, welchCovers: null, seqCoversAll: true }));
  let left = 0;
  let arm = 0;
  let unit = 0;
  let bucket = 0;
  const goal = s.metric === 'cost' ? 'cost' : 'quality';
  const last: (ReturnType<typeof analyzePhase> | undefined)[] = RULES.map(() => undefined);
  for (let k = 1; k <= outcomes; k++) {
    if (left === 0) {
      left = s.perUnit ? s.perUnit(u) : 1;
      arm = u() < 0.5 ? 0 : 1;
      unit = s.perUnit ? Math.max(-1, Math.min(1, normal(u))) : 0;
      bucket = Math.floor(u() * UNIT_BUCKETS);
      arms[arm]!.units++;
    }
    left--;
    const d = s.draw(u, unit);
    const a = arms[arm]!;
    const q = arm === 1 && s.metric === 'quality' ? d.quality + effect : d.quality;
    const c = arm === 1 && s.metric === 'cost' ? d.cost + effect : d.cost;
    a.q.add(q);
    a.c.add(c);
    a.bq.add(bucket, q);
    a.bc.add(bucket, c);
    if (d.hit) a.hits++;
    if (k % look !== 0) continue;
    for (const [r, rule] of RULES.entries()) {
      const o = out[r]!;
      const of = (a: Arm): ArmStats => (rule === 'per-outcome' ? armStats(a) : unitStats(a, rule === 'units CR1'));
      const stats = new Map([
        ['control', of(arms[0]!)],
        ['treatment', of(arms[1]!)],
      ]);
      if (effect === 0) {
        if (!o.breached && checkGuardrails([g], variants, 'control', stats, alpha).some((x) => x.breached)) o.breached = true;
        const counts = rule === 'per-outcome' ? [arms[0]!.q.n, arms[1]!.q.n] : [arms[0]!.units, arms[1]!.units];
        if (!o.srm && srmSequential(counts, [1, 1])?.mismatch) o.srm = true;
      }
      if (s.metric === 'ceilingHitRate') continue;
      if (arms[0]!.q.n < 50 || arms[1]!.q.n < 50) continue;
      last[r] = analyzePhase({ phase: 0, variants, control: 'control', alpha, arms: stats });
      const cmp = last[r]!.comparisons.find((x) => x.metric === goal)!;
      const ci = cmp.sequential?.ci;
      if (ci) {
        if (ci[0] > 0 || ci[1] < 0) o.excluded = true;
        if (!(ci[0] <= effect && effect <= ci[1])) o.seqCoversAll = false;
      }
    }
  }
  for (const r of RULES.keys()) {
    const w = last[r]?.comparisons.find((x) => x.metric === goal)?.welch?.ci;
    out[r]!.welchCovers = w ? w[0] <= effect && effect <= w[1] : null;
  }
  return out;
}

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const r = mulberry32(seed);
console.log(`rollout statistics on generated traffic: ${sims} experiments × ${outcomes} outcomes per scenario, a look every ${look} outcomes, α = ${alpha}, seed ${seed}`);
console.log('scenario | A/A guardrail rollbacks (ratio to α/2) | A/A sequential CI excluding 0 (ratio to α) | A/A SRM flags (ratio to 0.02) | A/B Welch coverage | A/B sequential coverage at every look');
for (const s of SCENARIOS) {
  if (only && !s.name.includes(only)) continue;
  const tally = RULES.map(() => ({ breached: 0, excluded: 0, srm: 0, welchCovered: 0, welchJudged: 0, seqCovered: 0 }));
  for (let i = 0; i < sims; i++) {
    const aa = runOne(s, r, 0);
    const ab = s.metric === 'ceilingHitRate' ? undefined : runOne(s, r, s.effect);
    RULES.forEach((_, j) => {
      const t = tally[j]!;
      if (aa[j]!.breached) t.breached++;
      if (aa[j]!.excluded) t.excluded++;
      if (aa[j]!.srm) t.srm++;
      if (!ab) return;
      if (ab[j]!.welchCovers !== null) {
        t.welchJudged++;
        if (ab[j]!.welchCovers) t.welchCovered++;
      }
      if (ab[j]!.seqCoversAll) t.seqCovered++;
    });
  }
  RULES.forEach((rule, j) => {
    const t = tally[j]!;
    const cov = s.metric === 'ceilingHitRate' ? 'n/a | n/a' : `${pct(t.welchCovered / Math.max(1, t.welchJudged))} | ${pct(t.seqCovered / sims)}`;
    console.log(
      `${s.name} [${rule}] | ${pct(t.breached / sims)} (${(t.breached / sims / (alpha / 2)).toFixed(2)}) | ${s.metric === 'ceilingHitRate' ? 'n/a' : `${pct(t.excluded / sims)} (${(t.excluded / sims / alpha).toFixed(2)})`} | ${pct(t.srm / sims)} (${(t.srm / sims / SRM_SEQUENTIAL_ALPHA).toFixed(2)}) | ${cov}`,
    );
  });
}
