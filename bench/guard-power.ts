/**
 * What the runtime guard can see, and when: decisions until its always-valid test shows a serving version worse
 * than the control arm, for 0/1 outcomes (the noisiest reward a user reports: sd ≈ 0.46 at a mean of 0.7), by
 * control share and true shortfall. The guard's own statistics (guard.ts accumulate + judge: the cumulative test at
 * α/2 and the sub-segment tests), looked at every `--every` decisions as the learner tick does; no offset (a reward
 * model cannot remove Bernoulli noise). Seeded; the ratio column is against the default share (5 %) in the same run.
 *
 *   node --import tsx bench/guard-power.ts [--trials 40] [--max 200000] [--every 250] [--shares 0.05,0.1,0.2] [--gaps 0.01,0.03,0.05,0.1]
 *                                          [--probation-share 0.2] [--probation-margin 0.02] [--leads 0,0.01,0.02,0.05,0.1] [--run 5000] [--fixed false]
 *
 * Prints, per share and gap, the median and 90th percentile of decisions to detection (trials not detected by
 * `--max` count as > max), the share of trials detected, and `GET /v1/models/:pipeline`'s `runtimeGuard.detectable`
 * (half the interval's width) after 10,000 and 40,000 decisions at no shortfall.
 *
 * Then the probation (guard.ts adaptiveControlShare, the service's rule at every look): the control share starts at
 * `--probation-share` and stays there until the learned arm has shown it is no worse than the control by more than
 * `--probation-margin`, then falls to 5 % (and below while it leads by more than 0.05). Against the share fixed at 5 %
 * and the rule without probation, paired on the same seeds: decisions to detection for each shortfall, and for a
 * learned arm that is not worse (it leads by `--leads`) what the probation costs over a run of `--run` decisions:
 * the extra control decisions × the lead, per decision, and false reverts.
 */
import { accumulate, adaptiveControlShare, CONTROL_SHARE_DEFAULTS, GUARD_DEFAULTS, judge, NEW_RUN, guardVerdict, type GuardRun } from '../src/learner/guard.js';
import { mulberry32 } from '../src/learner/rng.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const trials = Number(arg('trials', '40'));
const max = Number(arg('max', '200000'));
const every = Number(arg('every', '250'));
const shares = arg('shares', '0.05,0.1,0.2').split(',').map(Number);
const gaps = arg('gaps', '0.01,0.03,0.05,0.1').split(',').map(Number);
const BASE = 0.7;
const probationShare = Number(arg('probation-share', String(CONTROL_SHARE_DEFAULTS.max)));
const probationMargin = Number(arg('probation-margin', String(CONTROL_SHARE_DEFAULTS.probation)));
const leads = arg('leads', '0,0.01,0.02,0.05,0.1').split(',').map(Number);
const runLength = Number(arg('run', '5000'));

/** Decisions until the guard says worse (Infinity when not by `max`). */
function detect(seed: number, share: number, gap: number): number {
  const rng = mulberry32(seed);
  let run: GuardRun = { ...NEW_RUN };
  for (let i = 1; i <= max; i++) {
    const control = rng() < share ? 1 : 0;
    const p = control ? BASE : BASE - gap;
    run = accumulate(run, 1, control as 0 | 1, rng() < p ? 1 : 0, GUARD_DEFAULTS.segmentOutcomes, 0);
    if (i % every === 0 && judge(run, { alpha: GUARD_DEFAULTS.alpha, margin: 0 }).status === 'worse') return i;
  }
  return Infinity;
}

function halfWidth(seed: number, share: number, n: number): number {
  const rng = mulberry32(seed);
  let run: GuardRun = { ...NEW_RUN };
  for (let i = 0; i < n; i++) {
    const control = rng() < share ? 1 : 0;
    run = accumulate(run, 1, control as 0 | 1, rng() < BASE ? 1 : 0, GUARD_DEFAULTS.segmentOutcomes, 0);
  }
  const v = guardVerdict(run.total.learned, run.total.control, { alpha: GUARD_DEFAULTS.alpha / 2 });
  return v.ci ? (v.ci[1] - v.ci[0]) / 2 : NaN;
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};
const fmt = (x: number) => (Number.isFinite(x) ? String(x) : `>${max}`);

// `--fixed false`: only the probation tables (the fixed-share table and runtimeGuard.detectable take most of the time).
if (arg('fixed', 'true') !== 'false') {
  console.log(`guard power: 0/1 outcomes at mean ${BASE} (control) and ${BASE} − gap (learned); ${trials} seeded trials each; looks every ${every} decisions`);
  console.log('share  gap    median decisions  p90 decisions  detected  median ÷ at 5 %');
  const baseMedian = new Map<number, number>();
  for (const share of shares) {
    for (const gap of gaps) {
      const ds = Array.from({ length: trials }, (_, t) => detect(1000 * t + Math.round(gap * 1000) + Math.round(share * 1e6), share, gap));
      const med = q(ds, 0.5);
      if (share === 0.05) baseMedian.set(gap, med);
      const base = baseMedian.get(gap);
      const ratio = base !== undefined && Number.isFinite(base) && Number.isFinite(med) ? (med / base).toFixed(2) : '—';
      console.log(`${share.toFixed(2).padEnd(6)} ${gap.toFixed(2).padEnd(6)} ${fmt(med).padEnd(17)} ${fmt(q(ds, 0.9)).padEnd(14)} ${((ds.filter(Number.isFinite).length / trials) * 100).toFixed(0).padStart(4)} %   ${ratio}`);
    }
  }
  console.log('\nruntimeGuard.detectable (half-width of the always-valid interval) at no shortfall, median of the trials:');
  for (const share of shares) {
    const at = (n: number) => q(Array.from({ length: Math.min(trials, 20) }, (_, t) => halfWidth(77 + t, share, n)), 0.5).toFixed(3);
    console.log(`share ${share.toFixed(2)}: after 10,000 decisions ±${at(10_000)}, after 40,000 ±${at(40_000)}`);
  }
}

/**
 * One run under the service's share rule at every look: `probation` true = adaptiveControlShare as the service runs
 * it, false = the same without probation (its share never above 5 %). `diff` = learned − control (true means).
 * Returns the decision of the revert (Infinity: none by n) and the control decisions served.
 */
function adaptive(seed: number, probation: boolean, diff: number, n: number): { at: number; controls: number; changes: number } {
  const rng = mulberry32(seed);
  let run: GuardRun = { ...NEW_RUN };
  const base: number = GUARD_DEFAULTS.controlShare;
  let share = base;
  let controls = 0;
  // Level changes of the share: each is one write of the models document, synced to every process.
  let changes = 0;
  for (let i = 1; i <= n; i++) {
    const control = rng() < share ? 1 : 0;
    controls += control;
    const p = control ? BASE : BASE + diff;
    run = accumulate(run, 1, control as 0 | 1, rng() < p ? 1 : 0, GUARD_DEFAULTS.segmentOutcomes, 0);
    if (i % every === 0) {
      if (judge(run, { alpha: GUARD_DEFAULTS.alpha, margin: 0 }).status === 'worse') return { at: i, controls, changes };
      const next = adaptiveControlShare(base, run.total, { max: probation ? probationShare : 0, probation: probationMargin });
      if (next !== share) changes++;
      share = next;
    }
  }
  return { at: Infinity, controls, changes };
}

console.log(`\nprobation: control share ${probationShare} until the lead's lower bound clears −${probationMargin}, then the usual rule (5 %, lower while the learned arm leads by > ${CONTROL_SHARE_DEFAULTS.margin}); paired seeds`);
console.log('shortfall  without probation: median (p90)   with probation: median (p90)   median ratio');
for (const gap of gaps) {
  const a = Array.from({ length: trials }, (_, t) => adaptive(31 * t + 7, false, -gap, max).at);
  const b = Array.from({ length: trials }, (_, t) => adaptive(31 * t + 7, true, -gap, max).at);
  const ratio = Number.isFinite(q(a, 0.5)) && Number.isFinite(q(b, 0.5)) ? (q(b, 0.5) / q(a, 0.5)).toFixed(2) : '—';
  console.log(`${gap.toFixed(2).padEnd(10)} ${`${fmt(q(a, 0.5))} (${fmt(q(a, 0.9))})`.padEnd(30)} ${`${fmt(q(b, 0.5))} (${fmt(q(b, 0.9))})`.padEnd(30)} ${ratio}`);
}
console.log(`lead      control decisions in ${runLength} without / with probation   cost per decision (extra controls × lead ÷ ${runLength})   false reverts without / with   share changes per run, median / max, without / with`);
for (const lead of leads) {
  const a = Array.from({ length: trials }, (_, t) => adaptive(37 * t + 11, false, lead, runLength));
  const b = Array.from({ length: trials }, (_, t) => adaptive(37 * t + 11, true, lead, runLength));
  const ca = a.reduce((s, x) => s + x.controls, 0) / trials;
  const cb = b.reduce((s, x) => s + x.controls, 0) / trials;
  console.log(`${lead.toFixed(2).padEnd(9)} ${`${ca.toFixed(0)} / ${cb.toFixed(0)}`.padEnd(52)} ${(((cb - ca) * lead) / runLength).toFixed(5).padEnd(58)} ${`${a.filter((x) => Number.isFinite(x.at)).length} / ${b.filter((x) => Number.isFinite(x.at)).length} of ${trials}`.padEnd(30)} ${q(a.map((x) => x.changes), 0.5)} / ${Math.max(...a.map((x) => x.changes))}, ${q(b.map((x) => x.changes), 0.5)} / ${Math.max(...b.map((x) => x.changes))}`);
}
