/**
 * False "critical" verdicts of the critical-path probe under A/A (no cut changes quality), with units that report
 * several outcomes and a per-unit quality effect. Every number goes through the production `elasticities()` and is
 * printed under five rules from the same runs: per outcome (arms without unit buckets: what the elasticity interval did
 * before units), and on the arms' unit buckets with the cluster-robust variance CR1 (G/(G − 1) · Σ_b (S_b − m·n_b)² /
 * N², min(N, G) − 1 degrees of freedom per arm: before CR2), CR2 with those degrees of freedom (the variance's share of
 * the correction), CR2 with Bell–McCaffrey's degrees of freedom, and CR2 with Imbens–Kolesár's (what the reader gives:
 * src/feedback/units.ts).
 *
 *   node --import tsx bench/unit-probe.ts [--sims 1000] [--outcomes 10000] [--agents 3] [--fraction 0.5] [--looks 1] [--alpha 0.05] [--seed 1] [--only name]
 *
 * Each simulated probe receives `outcomes` outcomes over control and `agents` cut arms (equal weights). A unit is
 * assigned to an arm uniformly (as the variant hash does), hashed into one of UNIT_BUCKETS buckets, and reports 1, 2,
 * ~5 or ~20 outcomes (geometric). Its quality is 0.7 + 0.15 · effect + 0.1 · noise (clipped to [0, 1]), the effect
 * the unit's own draw in [−1, 1]; every arm draws alike, so no agent is critical and every verdict below is false. Each
 * cut arm's decisions give its agent `fraction` of its base budget (the budget ratio the analysis reads from them).
 *
 * The results are read `looks` times, evenly spaced (the last at the end). Per cut agent, counted when it happens at any
 * look: `critical` (the interval's lower bound above CRITICAL_ELASTICITY = 0.05; the elasticity is 0, so nominal
 * ≤ α/2, the one-sided error at a bound of 0), the lower bound above 0 (the verdict without the 0.05 margin: nominal
 * α/2) and the interval excluding 0 (nominal α). The margin hides most false verdicts when the interval is narrow
 * against it (many outcomes), so the two other columns show the interval's own error. The Welch interval is
 * fixed-horizon: with more than one look either rate may exceed its nominal level under every rule.
 */
import { mulberry32 } from '../src/learner/rng.js';
import type { ArmStats } from '../src/feedback/stats-reader.js';
import { UNIT_BUCKETS, type ClusteredVariance } from '../src/feedback/units.js';
import { elasticities, type Observation } from '../src/rollout/analysis.js';
import { fromWelford } from '../src/stats/moments.js';
import { ClusterBuckets } from '../test/helpers/cluster-buckets.js';
import { Welford } from '../test/helpers/welford.js';
import { clip, effect, flag, geometric, normal, type Rand } from './lib.js';

const sims = Number(flag('sims', '1000'));
const outcomes = Number(flag('outcomes', '10000'));
const agents = Number(flag('agents', '3'));
const fraction = Number(flag('fraction', '0.5'));
const looks = Number(flag('looks', '1'));
const alpha = Number(flag('alpha', '0.05'));
const seed = Number(flag('seed', '1'));
const only = flag('only', '');


const SCENARIOS: { name: string; perUnit: (u: Rand) => number }[] = [
  { name: '1 outcome per unit', perUnit: () => 1 },
  { name: '2 outcomes per unit', perUnit: () => 2 },
  { name: '~5 outcomes per unit (geometric)', perUnit: geometric(5) },
  { name: '~20 outcomes per unit (geometric)', perUnit: geometric(20) },
];

const ARMS = ['control', ...Array.from({ length: agents }, (_, i) => `cut.agent${i}`)];
const CUTS = ARMS.slice(1).map((variant) => ({ agent: variant.slice('cut.'.length), variant }));
/** The cut arms' observations as the analysis reads the budget ratio from them (the cut and the base budget). */
const BUDGETS = new Map<string, Observation[]>(CUTS.map((c) => [c.variant, [[0, null, [], [], [fraction * 1000, 1000], [], null]]]));

interface Arm {
  q: Welford;
  b: ClusterBuckets;
}

const RULES = ['per-outcome', 'units CR1', 'units CR2 old df', 'units CR2 BM df', 'units CR2 IK df'] as const;
type Rule = (typeof RULES)[number];

/**
 * The arm as the reader returns it under a rule: per outcome (no unit buckets), or with its unit buckets and their
 * variance: CR1 with min(N, G) − 1 degrees of freedom (before); CR2 with those degrees of freedom, with
 * Bell–McCaffrey's, or with Imbens–Kolesár's (the reader's).
 */
function armStats(a: Arm, rule: Rule): ArmStats {
  const base: ArmStats = { count: a.q.n, quality: fromWelford(a.q.n, a.q.mean, a.q.m2), cost: { ...fromWelford(0, 0, 0), total: 0 }, agents: {} };
  if (rule === 'per-outcome') return base;
  const cr2 = a.b.cr2(rule === 'units CR2 BM df');
  const quality: ClusteredVariance | undefined =
    rule === 'units CR1' ? a.b.cr1() : rule === 'units CR2 old df' && cr2 ? { ...cr2, df: Math.min(a.q.n, cr2.clusters) - 1 } : cr2;
  return { ...base, clustered: { ...(quality !== undefined ? { quality } : {}), clusters: a.b.g } };
}

interface Flags {
  critical: number;
  above0: number;
  excludes: number;
  anyCritical: boolean;
  measured: number;
}

function runOne(perUnit: (u: Rand) => number, u: Rand): Flags[] {
  const arms: Arm[] = ARMS.map(() => ({ q: new Welford(), b: new ClusterBuckets() }));
  // Per rule and cut: flagged critical / excluding 0 at some look.
  const crit = RULES.map(() => CUTS.map(() => false));
  const above0 = RULES.map(() => CUTS.map(() => false));
  const excl = RULES.map(() => CUTS.map(() => false));
  const measured = RULES.map(() => CUTS.map(() => false));
  const at = new Set(Array.from({ length: looks }, (_, i) => Math.round(((i + 1) * outcomes) / looks)));
  let left = 0;
  let arm = 0;
  let bucket = 0;
  let e = 0;
  for (let k = 1; k <= outcomes; k++) {
    if (left === 0) {
      left = perUnit(u);
      arm = Math.floor(u() * ARMS.length);
      bucket = Math.floor(u() * UNIT_BUCKETS);
      e = effect(u);
    }
    left--;
    const q = clip(0.7 + 0.15 * e + 0.1 * normal(u));
    arms[arm]!.q.add(q);
    arms[arm]!.b.add(bucket, q);
    if (!at.has(k)) continue;
    RULES.forEach((rule, r) => {
      const stats = new Map(ARMS.map((name, i) => [name, armStats(arms[i]!, rule)]));
      elasticities(CUTS, 'control', stats, alpha, BUDGETS).forEach((x, j) => {
        if (x.ci === null) return;
        measured[r]![j] = true;
        if (x.critical) crit[r]![j] = true;
        if (x.ci[0] > 0) above0[r]![j] = true;
        if (x.ci[0] > 0 || x.ci[1] < 0) excl[r]![j] = true;
      });
    });
  }
  const count = (xs: boolean[]): number => xs.filter(Boolean).length;
  return RULES.map((_, r) => ({ critical: count(crit[r]!), above0: count(above0[r]!), excludes: count(excl[r]!), anyCritical: crit[r]!.some(Boolean), measured: count(measured[r]!) }));
}

const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const r = mulberry32(seed);
console.log(
  `probe A/A with outcomes per unit: ${sims} probes × ${outcomes} outcomes per scenario, control + ${agents} cut arms (budget ratio ${fraction}), ${looks} look(s), α = ${alpha}, seed ${seed}`,
);
console.log('scenario [rule] | agents marked critical (ratio to α/2) | lower bound above 0 (ratio to α/2) | elasticity CIs excluding 0 (ratio to α) | probes with any agent critical | intervals measured');
for (const s of SCENARIOS) {
  if (only && !s.name.includes(only)) continue;
  const t = RULES.map(() => ({ critical: 0, above0: 0, excludes: 0, anyCritical: 0, measured: 0 }));
  for (let i = 0; i < sims; i++) {
    runOne(s.perUnit, r).forEach((f, j) => {
      const x = t[j]!;
      x.critical += f.critical;
      x.above0 += f.above0;
      x.excludes += f.excludes;
      x.measured += f.measured;
      if (f.anyCritical) x.anyCritical++;
    });
  }
  RULES.forEach((rule, j) => {
    const x = t[j]!;
    const rate = (k: number, of: number, nominal: number): string => `${pct(k / Math.max(1, of))} (${(k / Math.max(1, of) / nominal).toFixed(2)})`;
    console.log(`${s.name} [${rule}] | ${rate(x.critical, x.measured, alpha / 2)} | ${rate(x.above0, x.measured, alpha / 2)} | ${rate(x.excludes, x.measured, alpha)} | ${pct(x.anyCritical / sims)} | ${x.measured}`);
  });
}
