/**
 * Error rates of the rollout statistics that were kept per outcome after the quality and cost intervals moved to units:
 * the ceiling-hit rate (its guardrail and the agent comparison), the winsorized cost comparison and the truncation /
 * at-ceiling quality drops, on seeded A/A experiments whose units report several outcomes with a per-unit effect on
 * the ceiling hit, on quality and on cost. Every number goes through the production functions (`checkGuardrails`,
 * `analyzePhase`) and is printed from the same runs under the per-outcome rule (Bernoulli moments for the ceiling-hit
 * rate, observations without their unit: what the statistics did before units) and under two unit rules (the agent's
 * ceiling hits in the unit buckets, observations carrying their unit's bucket): `units CR1`, the cluster-robust variance
 * before CR2 (G/(G − 1) · Σ_b (S_b − m·n_b)² / N², min(N, G) − 1 degrees of freedom), and `units CR2`, the reader's
 * (src/feedback/units.ts). The winsorized cost and the quality drops compute their variance inside `analyzePhase`
 * from the observations' buckets, which is CR2 only: the CR1 row leaves them out (n/a); a run of the code before CR2
 * with the same flags and seed draws the same data, for their before numbers.
 *
 *   node --import tsx bench/unit-guardrails.ts [--sims 300] [--outcomes 10000] [--look 20] [--obs-look 1000] [--alpha 0.05] [--seed 1] [--only name] [--progress 25]
 *
 * Each simulated experiment receives `outcomes` outcomes; a unit is assigned by a fair coin (as the variant hash does)
 * and hashed into one of UNIT_BUCKETS buckets, and reports 1, 2, ~5 or ~20 outcomes (geometric). Each unit draws three
 * independent effects in [−1, 1]: its ceiling-hit propensity (logit 0.2 + 1.5 · effect; half of the hits are
 * truncations), its quality (0.7 + 0.15 · effect + noise 0.1) and its cost (0.01 · e^(effect + 0.5 · noise)). Both arms
 * draw alike (A/A) and quality does not depend on hits, so every flag below is false.
 *
 * The rollout job looks every `look` outcomes (10 s at 2 outcomes/s): the ceiling-hit guardrail (`maxRegression: 0`,
 * from minSamples 50 per arm; nominal ≤ α/2) and the agent comparison's always-valid interval excluding 0 (nominal
 * ≤ α). The winsorized comparison (q = 0.99) reads observations, so it is looked at every `obs-look` outcomes: its
 * always-valid interval excluding 0 at any look (nominal ≤ α) and its final Welch interval (nominal ≤ α). The quality
 * drops (truncated vs not, at ceiling vs not: Welch intervals in results) are judged at the end, in both arms, each
 * interval excluding 0 counted (nominal ≤ α).
 */
import { mulberry32 } from '../src/learner/rng.js';
import type { ArmStats } from '../src/feedback/stats-reader.js';
import { UNIT_BUCKETS, UNIT_MIN_CLUSTERS } from '../src/feedback/units.js';
import { analyzePhase, ceilingHitForTest, checkGuardrails, type Observation } from '../src/rollout/analysis.js';
import { DEFAULT_TUNING_N, sequentialDiff } from '../src/stats/sequential.js';
import type { Guardrail } from '../src/rollout/schema.js';
import { fromWelford } from '../src/stats/moments.js';
import { ClusterBuckets } from '../test/helpers/cluster-buckets.js';
import { Welford } from '../test/helpers/welford.js';
import { clip, effect, flag, geometric, normal, type Rand } from './lib.js';

const sims = Number(flag('sims', '300'));
const outcomes = Number(flag('outcomes', '10000'));
const look = Number(flag('look', '20'));
const obsLook = Number(flag('obs-look', '1000'));
const alpha = Number(flag('alpha', '0.05'));
const seed = Number(flag('seed', '1'));
const only = flag('only', '');
const progress = Number(flag('progress', '0'));

const logit = (p: number): number => Math.log(p / (1 - p));

const SCENARIOS: { name: string; perUnit: (u: Rand) => number }[] = [
  { name: '1 outcome per unit', perUnit: () => 1 },
  { name: '2 outcomes per unit', perUnit: () => 2 },
  { name: '~5 outcomes per unit (geometric)', perUnit: geometric(5) },
  { name: '~20 outcomes per unit (geometric)', perUnit: geometric(20) },
];

const AGENT = 'reasoner';

interface Arm {
  q: Welford;
  c: Welford;
  hits: number;
  trunc: number;
  bq: ClusterBuckets;
  bc: ClusterBuckets;
  bh: ClusterBuckets;
  obs: Observation[];
}
const newArm = (): Arm => ({ q: new Welford(), c: new Welford(), hits: 0, trunc: 0, bq: new ClusterBuckets(), bc: new ClusterBuckets(), bh: new ClusterBuckets(), obs: [] });

const RULES = ['per-outcome', 'units CR1', 'units CR2'] as const;
type Rule = (typeof RULES)[number];

/**
 * The arm as the reader returns it under a rule: per outcome, or with its unit buckets and their variance: CR1 with
 * min(N, G) − 1 degrees of freedom (before), or CR2 with its small-sample degrees of freedom (the reader's).
 */
function armStats(a: Arm, rule: Rule): ArmStats {
  const n = a.q.n;
  const base: ArmStats = {
    count: n,
    quality: fromWelford(n, a.q.mean, a.q.m2),
    cost: { ...fromWelford(a.c.n, a.c.mean, a.c.m2), total: a.c.mean * a.c.n },
    agents: { [AGENT]: { n, utilization: 0.5, ceilingHitRate: n ? a.hits / n : 0, truncationRate: n ? a.trunc / n : 0, qualityWhenHit: null, meanConsumed: 0, meanAllocated: 1000 } },
  };
  if (rule === 'per-outcome') return base;
  const of = (b: ClusterBuckets) => (rule === 'units CR1' ? b.cr1() : b.cr2());
  const quality = of(a.bq);
  const cost = of(a.bc);
  const hit = of(a.bh);
  return {
    ...base,
    clustered: {
      ...(quality !== undefined ? { quality } : {}),
      ...(cost !== undefined ? { cost } : {}),
      clusters: a.bq.g,
      agents: { [AGENT]: { ...(hit !== undefined ? { ceilingHit: hit } : {}), clusters: a.bh.g } },
    },
  };
}
/** The observations without their unit's bucket (as written before). */
const withoutBucket = (obs: readonly Observation[]): Observation[] => obs.map((o) => [o[0], o[1], o[2], o[3], o[4] ?? null, o[5] ?? []]);

interface Flags {
  guardrail: boolean;
  hitSeq: boolean;
  winsorSeq: boolean;
  winsorWelch: boolean;
  /** Drop intervals excluding 0 (of 4: truncation and at ceiling, in each arm), and how many were computed. */
  drops: number;
  dropsJudged: number;
}
const VARIANTS = [
  { name: 'control', strategy: 'a', weight: 1 },
  { name: 'treatment', strategy: 'b', weight: 1 },
];
const GUARD: Guardrail = { metric: 'ceilingHitRate', agent: AGENT, maxRegression: 0 };

function runOne(perUnit: (u: Rand) => number, u: Rand): Flags[] {
  const arms = [newArm(), newArm()];
  const out = RULES.map((): Flags => ({ guardrail: false, hitSeq: false, winsorSeq: false, winsorWelch: false, drops: 0, dropsJudged: 0 }));
  let left = 0;
  let arm = 0;
  let bucket = 0;
  let eHit = 0;
  let eQ = 0;
  let eC = 0;
  for (let k = 1; k <= outcomes; k++) {
    if (left === 0) {
      left = perUnit(u);
      arm = u() < 0.5 ? 0 : 1;
      bucket = Math.floor(u() * UNIT_BUCKETS);
      eHit = effect(u);
      eQ = effect(u);
      eC = effect(u);
    }
    left--;
    const hit = u() < 1 / (1 + Math.exp(-(logit(0.2) + 1.5 * eHit)));
    const truncated = hit && u() < 0.5;
    const q = clip(0.7 + 0.15 * eQ + 0.1 * normal(u));
    const c = 0.01 * Math.exp(eC + 0.5 * normal(u));
    const a = arms[arm]!;
    a.q.add(q);
    a.c.add(c);
    a.bq.add(bucket, q);
    a.bc.add(bucket, c);
    a.bh.add(bucket, hit ? 1 : 0);
    if (hit) a.hits++;
    if (truncated) a.trunc++;
    a.obs.push([q, c, truncated ? [AGENT] : [], hit ? [AGENT] : [], null, [AGENT], bucket]);
    const obsTurn = k % obsLook === 0 || k === outcomes;
    if (k % look !== 0 && !obsTurn) continue;
    for (const [r, rule] of RULES.entries()) {
      const o = out[r]!;
      const stats = new Map([
        ['control', armStats(arms[0]!, rule)],
        ['treatment', armStats(arms[1]!, rule)],
      ]);
      if (k % look === 0) {
        if (!o.guardrail && checkGuardrails([GUARD], VARIANTS, 'control', stats, alpha).some((x) => x.breached)) o.guardrail = true;
        // The agent comparison's always-valid interval, as analyzePhase computes it (without its other statistics).
        const few = rule !== 'per-outcome' && arms.some((x) => x.bh.g < UNIT_MIN_CLUSTERS);
        if (!o.hitSeq && !few && arms[0]!.q.n >= 50 && arms[1]!.q.n >= 50) {
          const ci = sequentialDiff(ceilingHitForTest(stats.get('treatment')!, AGENT), ceilingHitForTest(stats.get('control')!, AGENT), alpha, DEFAULT_TUNING_N, 1)?.ci;
          if (ci && (ci[0] > 0 || ci[1] < 0)) o.hitSeq = true;
        }
      }
      // The observation-based statistics (winsorized cost, quality drops) compute their variance in analyzePhase, from the
      // observations' buckets: CR2 only (the CR1 row leaves them out).
      if (!obsTurn || rule === 'units CR1' || arms[0]!.q.n < 50 || arms[1]!.q.n < 50) continue;
      const obs = new Map(VARIANTS.map((v, i) => [v.name, rule !== 'per-outcome' ? arms[i]!.obs : withoutBucket(arms[i]!.obs)]));
      const res = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha, arms: stats, obs, winsorize: 0.99 });
      const cmp = res.comparisons.find((x) => x.metric === 'cost')!;
      const ci = cmp.sequential?.ci;
      if (ci && (ci[0] > 0 || ci[1] < 0)) o.winsorSeq = true;
      if (k === outcomes) {
        const w = cmp.welch?.ci;
        o.winsorWelch = w !== undefined && (w[0] > 0 || w[1] < 0);
        for (const v of res.variants) {
          for (const d of [v.agents[AGENT]?.truncation, v.agents[AGENT]?.atCeiling]) {
            if (!d?.ci) continue;
            o.dropsJudged++;
            if (d.ci[0] > 0 || d.ci[1] < 0) o.drops++;
          }
        }
      }
    }
  }
  return out;
}

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const r = mulberry32(seed);
console.log(`A/A with outcomes per unit: ${sims} experiments × ${outcomes} outcomes per scenario, looks every ${look} (observations every ${obsLook}) outcomes, α = ${alpha}, seed ${seed}`);
console.log('scenario [rule] | ceiling-hit guardrail rollbacks (ratio to α/2) | ceiling-hit sequential CI excluding 0 (ratio to α) | winsorized cost sequential CI excluding 0 (ratio to α) | winsorized cost final Welch excluding 0 (ratio to α) | quality-drop Welch CIs excluding 0 (ratio to α)');
for (const s of SCENARIOS) {
  if (only && !s.name.includes(only)) continue;
  const t = RULES.map(() => ({ guardrail: 0, hitSeq: 0, winsorSeq: 0, winsorWelch: 0, drops: 0, dropsJudged: 0 }));
  for (let i = 0; i < sims; i++) {
    if (progress && i > 0 && i % progress === 0) console.error(`${s.name}: ${i} runs, ${JSON.stringify(t)}`);
    const run = runOne(s.perUnit, r);
    run.forEach((f, j) => {
      const x = t[j]!;
      if (f.guardrail) x.guardrail++;
      if (f.hitSeq) x.hitSeq++;
      if (f.winsorSeq) x.winsorSeq++;
      if (f.winsorWelch) x.winsorWelch++;
      x.drops += f.drops;
      x.dropsJudged += f.dropsJudged;
    });
  }
  RULES.forEach((rule, j) => {
    const x = t[j]!;
    const rate = (k: number, of: number, nominal: number): string => `${pct(k / Math.max(1, of))} (${(k / Math.max(1, of) / nominal).toFixed(2)})`;
    const obsCols = rule === 'units CR1' ? 'n/a | n/a | n/a' : `${rate(x.winsorSeq, sims, alpha)} | ${rate(x.winsorWelch, sims, alpha)} | ${rate(x.drops, x.dropsJudged, alpha)} of ${x.dropsJudged}`;
    console.log(`${s.name} [${rule}] | ${rate(x.guardrail, sims, alpha / 2)} | ${rate(x.hitSeq, sims, alpha)} | ${obsCols}`);
  });
}
