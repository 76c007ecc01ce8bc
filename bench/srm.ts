/**
 * Sample-ratio-mismatch checks over an experiment's whole life, at the rollout job's real cadence: today's
 * fixed-sample χ² test (p < 0.001 at every check; the baseline, run on the same simulated counts) against
 * the sequential Dirichlet-multinomial test (Lindon & Malek) the job uses now.
 *
 *   node --import tsx bench/srm.ts [--experiments 1000] [--days 7] [--rate 2] [--interval-ms 10000] [--seed 1] [--grid …]
 *
 * Each simulated experiment follows the ramp of experiments/rollouts/support-static-rollout.json (its coverage,
 * step shares, minimum durations and samples): `rate` eligible outcomes per second arrive, coverage × the
 * current step share of them in the experiment, Poisson per arm, and the job checks the phase's cumulative
 * counts every `interval-ms` (APPORTION_ROLLOUT_INTERVAL_MS, default 10 s) for `days`. Scenarios:
 *   - balanced 50/50 (correct assignment): share of experiments flagged at least once in their life;
 *   - a holdout (5 % held out vs 95 % exposed, no ramp): the same;
 *   - a 55/45 imbalance (assignment broken): the number of outcomes at the first flag, per test.
 * `--grid [--alphas 0.001,0.01,0.05] [--ks 10,30,100,1000]` also prints other levels and prior concentrations
 * (how the default was chosen).
 */
import { readFileSync } from 'node:fs';
import { mulberry32 } from '../src/learner/rng.js';
import { chiSquareSf } from '../src/stats/distributions.js';
import { SRM_CONCENTRATION, SRM_SEQUENTIAL_ALPHA, SRM_THRESHOLD, srm, srmSequential } from '../src/stats/srm.js';
import { flag } from './lib.js';

const experiments = Number(flag('experiments', '1000'));
const days = Number(flag('days', '7'));
const rate = Number(flag('rate', '2'));
const intervalMs = Number(flag('interval-ms', '10000'));
const seed = Number(flag('seed', '1'));
const grid = process.argv.includes('--grid');

interface Step {
  share: number;
  minDurationSec?: number;
  minSamples?: number;
}
const example = JSON.parse(readFileSync(new URL('../experiments/rollouts/support-static-rollout.json', import.meta.url), 'utf8')) as {
  experiments: { coverage: number; ramp: { steps: Step[] } }[];
};
const rollout = example.experiments[0]!;

/**
 * One SRM test as the job runs it, stateful over one experiment's life: `check` gets the cumulative counts
 * and this interval's increments and says whether the test flags. Both tests keep their statistic
 * incrementally (the simulation runs ~10⁸ checks) and confirm every flag, and the final state, with the
 * production functions `srm` and `srmSequential`: a disagreement stops the run.
 */
interface Test {
  readonly name: string;
  readonly alpha?: number;
  start(weights: readonly number[]): { check(counts: readonly number[], delta: readonly number[]): boolean; end(counts: readonly number[]): void };
}

/** χ² value whose upper tail is `p` (bisection on the production chiSquareSf). */
function chiCritical(p: number, df: number): number {
  let lo = 0;
  let hi = 1000;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (chiSquareSf(mid, df) < p) hi = mid;
    else lo = mid;
  }
  return hi;
}

const TODAY: Test = {
  name: 'today: χ² p < 0.001 at every check',
  start(weights) {
    const wsum = weights.reduce((a, b) => a + b, 0);
    const crit = chiCritical(SRM_THRESHOLD, weights.length - 1);
    return {
      check(counts) {
        let n = 0;
        for (const c of counts) n += c;
        if (n === 0) return false;
        let chi = 0;
        for (let i = 0; i < counts.length; i++) {
          const e = (n * weights[i]!) / wsum;
          chi += (counts[i]! - e) ** 2 / e;
        }
        if (chi <= crit) return false;
        if (!srm(counts, weights)?.mismatch) throw new Error(`fast χ² disagrees with srm() at ${counts.join('/')}`);
        return true;
      },
      end(counts) {
        void counts;
      },
    };
  },
};

const seqTest = (alpha: number, k: number): Test => ({
  name: `sequential α = ${alpha}, K = ${k}`,
  alpha,
  start(weights) {
    const wsum = weights.reduce((a, b) => a + b, 0);
    const theta = weights.map((w) => w / wsum);
    const a = theta.map((t) => k * t);
    const logTheta = theta.map((t) => Math.log(t));
    const threshold = Math.log(1 / alpha);
    let logBf = 0;
    let n = 0;
    // log Γ(z + d) − log Γ(z) = log Π_{j<d} (z + j), in chunks that cannot overflow.
    const rise = (z: number, d: number) => {
      let s = 0;
      let prod = 1;
      for (let j = 0; j < d; j++) {
        prod *= z + j;
        if (prod > 1e250) {
          s += Math.log(prod);
          prod = 1;
        }
      }
      return s + Math.log(prod);
    };
    const counts0 = weights.map(() => 0);
    return {
      check(counts, delta) {
        let changed = false;
        for (let i = 0; i < delta.length; i++) {
          const d = delta[i]!;
          if (d === 0) continue;
          changed = true;
          logBf += rise(a[i]! + counts[i]! - d, d) - d * logTheta[i]!;
          logBf -= rise(k + n, d);
          n += d;
        }
        if (!changed || logBf < threshold) return false;
        const real = srmSequential(counts, weights, alpha, k)!;
        if (Math.abs(real.logBayesFactor - logBf) > 1e-6 * Math.max(1, Math.abs(logBf))) throw new Error(`incremental log BF ${logBf} ≠ srmSequential ${real.logBayesFactor}`);
        return real.mismatch;
      },
      end(counts) {
        if (counts.every((c, i) => c === counts0[i])) return;
        const real = srmSequential(counts, weights, alpha, k)!;
        if (Math.abs(real.logBayesFactor - logBf) > 1e-6 * Math.max(1, Math.abs(logBf))) throw new Error(`incremental log BF ${logBf} ≠ srmSequential ${real.logBayesFactor}`);
      },
    };
  },
});
const CHOSEN = seqTest(SRM_SEQUENTIAL_ALPHA, SRM_CONCENTRATION);
const tests: Test[] = [TODAY, CHOSEN];
if (grid) {
  const list = (name: string, def: string) => flag(name, def).split(',').map(Number);
  for (const a of list('alphas', '0.001,0.01,0.05')) for (const k of list('ks', '10,30,100,1000')) if (!(a === SRM_SEQUENTIAL_ALPHA && k === SRM_CONCENTRATION)) tests.push(seqTest(a, k));
}

function poisson(u: () => number, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda > 50) {
    // Normal approximation (only reached with --rate far above the default).
    const z = Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * z));
  }
  const l = Math.exp(-lambda);
  let k = 0;
  let p = u();
  while (p > l) {
    k++;
    p *= u();
  }
  return k;
}

interface Life {
  /** Per test: outcomes in the experiment at its first flag, or undefined when it never flagged. */
  readonly firstFlag: (number | undefined)[];
}

/**
 * Simulates one experiment: counts arrive per arm with `trueShares`, the job checks every interval with
 * `weights` as the expected split. Stops early once every test has flagged.
 */
function live(u: () => number, weights: readonly number[], trueShares: readonly number[], ramp: readonly Step[] | undefined, coverage: number): Life {
  const checks = Math.floor((days * 86_400_000) / intervalMs);
  const counts = weights.map(() => 0);
  const delta = weights.map(() => 0);
  const running = tests.map((t) => t.start(weights));
  const firstFlag: (number | undefined)[] = tests.map(() => undefined);
  let open = tests.length;
  let step = 0;
  let stepStart = 0;
  let stepSamples = 0;
  let total = 0;
  for (let c = 1; c <= checks; c++) {
    const share = ramp ? ramp[step]!.share : 1;
    const lambda = (rate * coverage * share * intervalMs) / 1000;
    let any = 0;
    for (let i = 0; i < counts.length; i++) {
      const x = poisson(u, lambda * trueShares[i]!);
      delta[i] = x;
      counts[i]! += x;
      any += x;
    }
    total += any;
    stepSamples += any;
    // The statistics are functions of the counts: a check with no new outcome cannot change a verdict.
    if (any > 0) {
      for (let t = 0; t < tests.length; t++) {
        // Every test keeps its statistic current, even after it flagged (the checks cost the same).
        const flagged = running[t]!.check(counts, delta);
        if (flagged && firstFlag[t] === undefined) {
          firstFlag[t] = total;
          open--;
        }
      }
    }
    if (open === 0) break;
    // The job's ramp rule: advance when the step has lasted its minimum and collected its minimum sample.
    if (ramp && step < ramp.length - 1) {
      const s = ramp[step]!;
      if ((c - stepStart) * intervalMs >= (s.minDurationSec ?? 0) * 1000 && stepSamples >= (s.minSamples ?? 0)) {
        step++;
        stepStart = c;
        stepSamples = 0;
      }
    }
  }
  running.forEach((r) => r.end(counts));
  return { firstFlag };
}

function scenario(name: string, weights: number[], shares: number[], ramp: Step[] | undefined, coverage: number, salt: number): Life[] {
  const out: Life[] = [];
  for (let e = 0; e < experiments; e++) out.push(live(mulberry32(seed * 1_000_003 + salt * 7919 + e), weights, shares, ramp, coverage));
  void name;
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};
const t0 = Date.now();
const checks = Math.floor((days * 86_400_000) / intervalMs);
console.log(
  `${experiments} simulated experiments × ${days} days, checked every ${intervalMs / 1000} s (${checks.toLocaleString('en')} checks each), ` +
    `${rate} eligible outcomes/s, ramp and coverage of support-static-rollout.json (${rollout.ramp.steps.map((s) => s.share).join(' → ')} of ${rollout.coverage})`,
);

const falseFlags = (title: string, lives: Life[], nominal: (t: Test) => string) => {
  console.log(`\n${title}: experiments flagged at least once in their life`);
  tests.forEach((t, i) => {
    const k = lives.filter((l) => l.firstFlag[i] !== undefined).length;
    console.log(`  ${t.name.padEnd(40)} ${pct(k / lives.length).padStart(8)}  (${k}/${lives.length})${nominal(t)}`);
  });
};
const nominalOf = (t: Test) => (t.alpha === undefined ? '  nominal 0.10 % per look, not per life' : `  nominal ${pct(t.alpha)} per life`);

falseFlags('balanced 50/50', scenario('balanced', [1, 1], [0.5, 0.5], rollout.ramp.steps, rollout.coverage, 1), nominalOf);
falseFlags('holdout 5 % / 95 %', scenario('holdout', [0.05, 0.95], [0.05, 0.95], undefined, 1, 2), nominalOf);

const broken = scenario('imbalanced', [1, 1], [0.55, 0.45], rollout.ramp.steps, rollout.coverage, 3);
console.log('\n55/45 imbalance (weights 1:1): outcomes in the experiment at the first flag');
const base = broken.map((l) => l.firstFlag[0]).filter((x): x is number => x !== undefined);
tests.forEach((t, i) => {
  const ns = broken.map((l) => l.firstFlag[i]).filter((x): x is number => x !== undefined);
  const med = quantile(ns, 0.5);
  const ratio = i === 0 ? '' : `  ratio to today: median ${(med / quantile(base, 0.5)).toFixed(2)}, p90 ${(quantile(ns, 0.9) / quantile(base, 0.9)).toFixed(2)}`;
  console.log(`  ${t.name.padEnd(40)} detected ${pct(ns.length / broken.length)}  median ${med}  p10 ${quantile(ns, 0.1)}  p90 ${quantile(ns, 0.9)}${ratio}`);
});
console.log(`\n(${((Date.now() - t0) / 1000).toFixed(0)} s)`);
