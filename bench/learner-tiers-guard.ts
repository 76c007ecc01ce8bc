/**
 * The runtime guard on a pipeline with model tiers, through the service's tier loop (src/learner/sim/tier-loop.ts):
 * how long a joint version that has become worse than the control strategy keeps serving (detection time), and how
 * often the guard reverts one that is not worse (false reverts). Like bench/learner-guard.ts for token splits.
 *
 *   node --import tsx bench/learner-tiers-guard.ts [--worlds cheap-suffices,strong-needed] [--runs 10] [--train 4000]
 *        [--before 2000] [--max 20000] [--null-outcomes 10000] [--rps 50] [--seed 1] [--control-margin 0.05]
 *
 * Per tier world: a joint version is trained by the service's loop (`train` outcomes; the version serving at the end,
 * else the newest trained), then frozen and served as the service serves it (its exploration at its version number,
 * the 5 % control arm with the default strategy: uniform on the first model under the ceiling), the guard checked
 * every 5 s of simulated time at `rps` (guard.ts: cumulative and sub-segment tests, α = 0.05; reverts as
 * guard-monitor.ts). After `before` outcomes the world degrades: the cheap models reach less than they did for every
 * agent (× ½, ¼, 1/10: the joint version keeps them where it learned they suffice), then, with reach × 1/10, the
 * agent the version starves most relative to the control (its served budget ÷ the control's, lowest) needs 2, 4, …
 * times the tokens on every model: the first step where the version's served value is below the control's by ≥ 0.03
 * (true values, noise-free).
 * Detection time = outcomes (and simulated seconds) from the degradation to the revert. False reverts: `runs` runs of
 * `null-outcomes` outcomes without degradation (a version that is already worse than the control is reported apart:
 * its reverts are correct ones). Baselines are the same run's: the control's and the frozen version's true values
 * before and after the degradation.
 */
import { loadTierWorld, tierWorld, type TierWorld } from '../src/learner/sim/tiers.js';
import { runTierLoop, type TierLoopResult, type TierLoopVersion } from '../src/learner/sim/tier-loop.js';
import { degradeWorld, mostStarved } from '../src/learner/sim/degrade.js';
import { GUARD_DEFAULTS } from '../src/learner/guard.js';
import { flag } from './lib.js';

const worlds = flag('worlds', 'cheap-suffices,strong-needed').split(',');
const runs = Number(flag('runs', '10'));
const trainOutcomes = Number(flag('train', '4000'));
const before = Number(flag('before', '2000'));
const maxAfter = Number(flag('max', '20000'));
const nullOutcomes = Number(flag('null-outcomes', '10000'));
const rps = Number(flag('rps', '50'));
const seed = Number(flag('seed', '1'));
// `--control-margin x`: the lead beyond which the guard lowers its control share (controlShareMargin; default the service's).
const controlMargin = flag('control-margin', '');
const params = controlMargin !== '' ? { controlShareMargin: Number(controlMargin) } : {};
const TICK_S = 5;
const guardEvery = Math.max(1, Math.round(rps * TICK_S));

/** The world with every cheap model's reach scaled by `reach` and `agent` needing `factor` × the tokens. */
function degrade(tw: TierWorld, agent: string, reach: number, factor: number): TierWorld {
  const response = Object.fromEntries(Object.entries(tw.doc.response).map(([a, byModel]) => [a, Object.fromEntries(Object.entries(byModel).map(([m, r]) => [m, { ...r, reach: r.reach * reach }]))]));
  const world = factor === 1 ? { ...tw.doc.world } : degradeWorld(tw.doc.world, agent, factor);
  return tierWorld({ ...tw.doc, name: `${tw.doc.name}-degraded`, world, response });
}

const mean = (xs: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : NaN;
};

/** True (noise-free) values of the learned arm and of the control arm of a frozen run. */
function armValues(r: TierLoopResult, from = 0): { learned: number; control: number } {
  const l: number[] = [];
  const c: number[] = [];
  for (let t = from; t < r.quality.length; t++) (r.control[t] ? c : l).push(r.quality[t]!);
  return { learned: mean(l), control: mean(c) };
}

const pct = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
};

console.log(
  `bench/learner-tiers-guard: ${runs} runs per world, ${rps} requests/s, guard tick ${TICK_S} s (${guardEvery} outcomes), control share ${GUARD_DEFAULTS.controlShare} (lowered while the version leads: margin ${controlMargin || 'default'}), α ${GUARD_DEFAULTS.alpha}; a version trained over ${trainOutcomes} outcomes of the service's tier loop (seed ${seed}), then frozen`,
);
console.log(`degradation after ${before} outcomes (detection runs, at most ${maxAfter} after) · ${nullOutcomes} outcomes without degradation (false-revert runs)\n`);
let falseTotal = 0;
let nullRuns = 0;
const allDetect: number[] = [];
for (const name of worlds) {
  const t0 = Date.now();
  const tw = loadTierWorld(name);
  const trained = runTierLoop({ world: tw, outcomes: trainOutcomes, seed, params });
  const version: TierLoopVersion | undefined = trained.final;
  if (!version) {
    console.log(`${name}: no version trained in ${trainOutcomes} outcomes`);
    continue;
  }
  const frozen = { world: tw, seed, initial: version, retrain: false, guardEvery, params } as const;
  // True values with the guard off: the control arm serves its 5 %, so both arms are measured on the same requests.
  const probe = (w: TierWorld | undefined) => runTierLoop({ ...frozen, outcomes: 8000, seed: seed + 101, guard: false, ...(w ? { degradeAt: 0, degraded: w } : {}) });
  const p0 = probe(undefined);
  const v0 = armValues(p0);
  // The agent the version starves most relative to the control's budgets.
  const learnedBudgets = p0.budgets.filter((_, t) => p0.control[t] === 0);
  const controlBudgets = p0.budgets.filter((_, t) => p0.control[t] === 1);
  const controlMean = tw.agents.map((_, j) => mean(controlBudgets.map((b) => b[j]!)));
  const starved = mostStarved(tw.world, learnedBudgets, controlMean);
  // The ladder: the cheap models' reach × ½, ¼, 1/10, then with that the starved agent's need × 2, 4, … (at most 64).
  const ladder: [number, number][] = [[0.5, 1], [0.25, 1], [0.1, 1], [0.1, 2], [0.1, 4], [0.1, 8], [0.1, 16], [0.1, 32], [0.1, 64]];
  let step = 0;
  let [reach, factor] = ladder[0]!;
  let degraded = degrade(tw, starved, reach, factor);
  let v1 = armValues(probe(degraded));
  while (v1.learned > v1.control - 0.03 && step < ladder.length - 1) {
    [reach, factor] = ladder[++step]!;
    degraded = degrade(tw, starved, reach, factor);
    v1 = armValues(probe(degraded));
  }
  const detect: number[] = [];
  let missed = 0;
  let early = 0;
  for (let r = 0; r < runs; r++) {
    const res = runTierLoop({ ...frozen, seed: 1000 + r, outcomes: before + maxAfter, degradeAt: before, degraded });
    const at = res.reverts[0]?.at;
    if (at === undefined) missed++;
    else if (at <= before) early++;
    else detect.push(at - before);
  }
  // Runs without degradation: a revert is false only when the version is not worse than the control (true values).
  const nullAt: number[] = [];
  for (let r = 0; r < runs; r++) {
    const at = runTierLoop({ ...frozen, seed: 5000 + r, outcomes: nullOutcomes }).reverts[0]?.at;
    if (at !== undefined) nullAt.push(at);
  }
  const worseFromStart = v0.learned < v0.control;
  const falseReverts = worseFromStart ? 0 : nullAt.length;
  if (!worseFromStart) {
    falseTotal += falseReverts + early;
    nullRuns += runs;
    allDetect.push(...detect);
  }
  const secs = detect.map((d) => Math.ceil(d / rps / TICK_S) * TICK_S);
  console.log(
    `${name}: version ${version.version} (${trained.version[trainOutcomes - 1]! > 0 ? 'serving' : 'newest trained, never activated'}); learned vs control (true values) ${v0.learned.toFixed(3)} vs ${v0.control.toFixed(3)} → degraded ${v1.learned.toFixed(3)} vs ${v1.control.toFixed(3)} ` +
      `(cheap models' reach × ${reach}${factor > 1 ? `, ${starved} critical with need × ${factor}` : ''}) | detected ${detect.length}/${runs}${missed ? ` (${missed} not within ${maxAfter})` : ''}${early ? ` (${early} reverted before the degradation)` : ''} | ` +
      `detection outcomes median ${detect.length ? `${pct(detect, 0.5)} [max ${Math.max(...detect)}]` : '—'} | seconds ${secs.length ? `${pct(secs, 0.5)} s [max ${Math.max(...secs)} s]` : '—'} | false reverts ${falseReverts}/${runs}   (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );
  if (worseFromStart) {
    console.log(
      `${name}: the version is worse than the control before any degradation (${v0.learned.toFixed(3)} vs ${v0.control.toFixed(3)}): the guard reverted it in ${nullAt.length}/${runs} runs without degradation (correct reverts), median at outcome ${nullAt.length ? pct(nullAt, 0.5) : '—'} [max ${nullAt.length ? Math.max(...nullAt) : '—'}]; not counted in the detection and false-revert totals`,
    );
  }
  console.log(`ROW ${JSON.stringify({ world: name, version: version.version, before: v0, after: v1, reach, factor, detect, missed, early, falseReverts, nullAt, worseFromStart, runs })}`);
}
console.log(
  `\nall tier worlds: detection median ${allDetect.length ? pct(allDetect, 0.5) : '—'} outcomes, max ${allDetect.length ? Math.max(...allDetect) : '—'}; false reverts ${falseTotal} of ${nullRuns} runs without degradation (+ pre-degradation stretches) = ${((100 * falseTotal) / Math.max(1, nullRuns)).toFixed(1)} % (bound α = ${GUARD_DEFAULTS.alpha * 100} % per run)`,
);
