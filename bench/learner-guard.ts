/**
 * The learner's runtime guard: how long a model that has become worse than the control strategy keeps serving
 * (detection time), and how often the guard reverts a model that is not worse (false reverts).
 *
 *   node --import tsx bench/learner-guard.ts [--worlds all] [--runs 10] [--rps 50] [--before 3000] [--max 40000] [--null-outcomes 20000] [--share 0.05] [--min 0.01] [--margin 0.05]
 *                                           [--raised 0.2] [--probation 0.02]
 *
 * Per named world (experiments/worlds/): a model is trained in-process (4,000 outcomes, the service's trainer
 * and policy), then frozen and served as the service serves it (SquareCB exploration; a 5 % control arm with the
 * pipeline default, uniform) at `rps` requests per second, one outcome per request, the guard checked every
 * 5 s of simulated time (the learner tick) with the service's guard code (guard.ts: cumulative and sub-segment
 * tests, α = 0.05). After `before` outcomes the world degrades: the agent the model starves most (its
 * served budget ÷ the uniform budget, lowest) becomes critical (weight 0.9, need × 4, doubled until the model
 * is worse than uniform by ≥ 0.03) — a change the frozen model cannot follow. Detection time = outcomes (and simulated seconds)
 * from the degradation to the revert. False reverts: `runs` runs of `null-outcomes` outcomes per world without
 * degradation, where the model is better than the control throughout.
 * The model is frozen: the worst case (in the service it keeps retraining, and every retrain can follow the
 * change; the guard's evidence pools the versions).
 * Each world prints three lines, the guard as the service runs it (each reward less the serving model's predicted reward
 * of the control's split for the request, ControlMeta `z`) with three control arms, on runs of the same seeds: `fixed`,
 * the control arm at `--share` throughout (the rule until 2026-12-04); `lowered`, the share the guard sets at each
 * tick while the learned arm leads the control clearly (guard.ts adaptiveControlShare: floor `--min` 0.01, margin
 * 0.05; the rule until 2026-12-06); and `probation`, the same and, while the serving version has not shown that it is
 * no worse than the control by more than `--probation` (the lead's lower bound above −0.02; fewer than 30 outcomes in
 * an arm count as not shown), the share raised to `--raised`; then the paired ratios of their detection times and the
 * control decisions each served before the degradation (what the control arm cost the user: its share × the gap).
 * `--before 0`: the model is worse than the control from its first decision (a bad version that passed the gate).
 */
import { loadTf } from '../src/learner/backend.js';
import { accumulate, adaptiveControlShare, CONTROL_SHARE_DEFAULTS, GUARD_DEFAULTS, judge, NEW_RUN, type GuardRun } from '../src/learner/guard.js';
import { forward, predict, type ModelWeights } from '../src/learner/model.js';
import { decide, EXPLORE_DEFAULTS, optionsFor, type ExploreOptions } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { contextFeatures, expectedQuality, loadWorld, sampleContext, simulateOutcome, uniformBudgets, WORLD_NAMES, type World } from '../src/learner/sim/world.js';
import type { FeatureEncoder } from '../src/learner/features.js';
import { degradeWorld, mostStarved } from '../src/learner/sim/degrade.js';
import { flag } from './lib.js';

const worldNames = flag('worlds', 'all') === 'all' ? [...WORLD_NAMES] : flag('worlds', '').split(',');
const runs = Number(flag('runs', '10'));
const rps = Number(flag('rps', '50'));
const before = Number(flag('before', '3000'));
const maxAfter = Number(flag('max', '40000'));
const nullOutcomes = Number(flag('null-outcomes', '20000'));
const TICK_S = 5;
const SHARE = Number(flag('share', String(GUARD_DEFAULTS.controlShare)));
const MIN = Number(flag('min', String(CONTROL_SHARE_DEFAULTS.min)));
const MARGIN = Number(flag('margin', String(CONTROL_SHARE_DEFAULTS.margin)));
const RAISED = Number(flag('raised', String(CONTROL_SHARE_DEFAULTS.max)));
const PROBATION = Number(flag('probation', String(CONTROL_SHARE_DEFAULTS.probation)));
/** The control arms compared: 0 the share fixed, 1 lowered while the learned arm leads, 2 lowered or raised (probation). */
type Mode = 0 | 1 | 2;
// The service's exploration defaults (budget and its decay by version), as a learned strategy without params serves.
const explore0 = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };
let explore: ExploreOptions = explore0;

const { tf } = await loadTf();

interface Served {
  readonly weights: ModelWeights;
  readonly encoder: FeatureEncoder;
}

/**
 * Serves one run with the service's guard (each reward less the serving model's predicted reward of the control's split
 * for that request, z = r̂(x, control)); returns the outcome index (from 0) of the first revert, or undefined, and the
 * control decisions before the degradation. `lowered`: the control share is the one the guard's tick sets
 * (adaptiveControlShare on the run's evidence), else `SHARE` throughout.
 */
function serve(world: World, degraded: World | undefined, m: Served, outcomes: number, seed: number, mode: Mode): { revertAt?: number; controls: number } {
  const rng = mulberry32(seed);
  const agents = policyAgents(world);
  const T = world.totalTokens;
  const uniform = uniformBudgets(world, T);
  const perTick = Math.max(1, Math.round(rps * TICK_S));
  let run: GuardRun = NEW_RUN;
  let share = SHARE;
  let controls = 0;
  for (let t = 0; t < outcomes; t++) {
    const w = degraded && t >= before ? degraded : world;
    const x = sampleContext(w, rng);
    const heads = forward(m.weights, m.encoder.encode(contextFeatures(x)));
    const dec = decide(heads, agents, T, explore, rng);
    const arm: 0 | 1 = rng() < share ? 1 : 0;
    if (arm === 1 && (!degraded || t < before)) controls++;
    const q = simulateOutcome(w, 0, x, arm === 1 ? uniform : dec.budgets, rng).quality;
    run = accumulate(run, 1, arm, q, GUARD_DEFAULTS.segmentOutcomes, predict(heads, uniform));
    if ((t + 1) % perTick === 0) {
      if (judge(run).status === 'worse') return { revertAt: t + 1, controls };
      if (mode > 0) share = adaptiveControlShare(SHARE, run.total, { min: MIN, margin: MARGIN, max: mode === 2 ? RAISED : 0, probation: PROBATION });
    }
  }
  return { controls };
}

/** True values (noise-free) of the served learned arm and of the control on 4,000 contexts. */
function values(world: World, m: Served, seed: number): { learned: number; control: number } {
  const rng = mulberry32(seed);
  const agents = policyAgents(world);
  const uniform = uniformBudgets(world, world.totalTokens);
  let l = 0;
  let c = 0;
  const n = 4000;
  for (let i = 0; i < n; i++) {
    const x = sampleContext(world, rng);
    l += expectedQuality(world, 0, x, decide(forward(m.weights, m.encoder.encode(contextFeatures(x))), agents, world.totalTokens, explore, rng).budgets) / n;
    c += expectedQuality(world, 0, x, uniform) / n;
  }
  return { learned: l, control: c };
}

const pct = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
};

console.log(`bench/learner-guard: ${runs} runs per world, ${rps} requests/s, guard tick ${TICK_S} s, control share ${SHARE} (lowered: floor ${MIN}, margin ${MARGIN}; probation: raised to ${RAISED} while the lead's lower bound ≤ −${PROBATION}), α ${GUARD_DEFAULTS.alpha} (cumulative test α/2, sub-segments of ${GUARD_DEFAULTS.segmentOutcomes} decisions at (α/2)/(j(j+1)))`);
console.log(`degradation after ${before} outcomes (detection runs) · ${nullOutcomes} outcomes without degradation (false-revert runs)\n`);
console.log('world           | learned vs control before → after (true values) | detected | detection outcomes median [max] | seconds median [max] | false reverts | control decisions before');
// By mode: fixed, lowered, probation.
const falseTotal = [0, 0, 0];
let nullRuns = 0;
const allDetect: number[][] = [[], [], []];
// Paired per run, where both detected: lowered ÷ fixed, probation ÷ lowered.
const ratios: number[][] = [[], []];
const controlTotals = [0, 0, 0];
// Control decisions in the runs without degradation (what each arm costs a version that is not worse).
const nullControlTotals = [0, 0, 0];
for (const name of worldNames) {
  const world0 = loadWorld(name);
  const world: World = { ...world0, drift: undefined };
  const t0 = Date.now();
  const trained = await runLoop(tf, { world, outcomes: 4000, seed: 7, explore: explore0, evalContexts: 100, checkpointEvery: 4000 });
  const m: Served = { weights: trained.weights, encoder: trained.encoder };
  explore = optionsFor(explore0, trained.serving?.version ?? 1);
  // The agent the model starves most, relative to uniform.
  const agents = policyAgents(world);
  const rng = mulberry32(5);
  const served = Array.from({ length: 400 }, () => {
    const x = sampleContext(world, rng);
    return decide(forward(m.weights, m.encoder.encode(contextFeatures(x))), agents, world.totalTokens, explore, rng).budgets;
  });
  const starved = mostStarved(world, served, uniformBudgets(world, world.totalTokens));
  // Need × 4; where that does not make the model worse than uniform by 0.03 (a roomy total), × 8, 16, …
  let factor = 4;
  let degraded = degradeWorld(world, starved, factor);
  let v1 = values(degraded, m, 11);
  while (v1.learned > v1.control - 0.03 && factor < 256) {
    factor *= 2;
    degraded = degradeWorld(world, starved, factor);
    v1 = values(degraded, m, 11);
  }
  const v0 = values(world, m, 11);
  const runsOut: ReturnType<typeof serve>[][] = [[], [], []];
  const nullOut: ReturnType<typeof serve>[][] = [[], [], []];
  for (const k of [0, 1, 2] as const) {
    for (let r = 0; r < runs; r++) runsOut[k]!.push(serve(world, degraded, m, before + maxAfter, 1000 + r, k));
    for (let r = 0; r < runs; r++) nullOut[k]!.push(serve(world, undefined, m, nullOutcomes, 5000 + r, k));
  }
  nullRuns += runs;
  const line = (label: string, k: Mode) => {
    const { detect, missed, early, falseReverts, nullControls } = tallyOf(k);
    nullControlTotals[k] = nullControlTotals[k]! + nullControls;
    const controls = runsOut[k]!.reduce((a, r) => a + r.controls, 0);
    controlTotals[k] = controlTotals[k]! + controls;
    falseTotal[k] = falseTotal[k]! + falseReverts + early;
    allDetect[k]!.push(...detect);
    const secs = detect.map((d) => Math.ceil(d / rps / TICK_S) * TICK_S);
    console.log(
      `${label.padEnd(15)} | ${v0.learned.toFixed(3)} vs ${v0.control.toFixed(3)} → ${v1.learned.toFixed(3)} vs ${v1.control.toFixed(3)} (${starved} critical, need × ${factor}) | ${detect.length}/${runs}${missed ? ` (${missed} not within ${maxAfter})` : ''}${early ? ` (${early} reverted before the degradation)` : ''} | ${detect.length ? `${pct(detect, 0.5)} [${Math.max(...detect)}]` : '—'} | ${secs.length ? `${pct(secs, 0.5)} s [${Math.max(...secs)} s]` : '—'} | ${falseReverts}/${runs} | ${controls}   (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
    );
    return detect;
  };
  const tallyOf = (k: Mode) => {
    const detect: number[] = [];
    let missed = 0;
    let early = 0;
    for (const res of runsOut[k]!) {
      const at = res.revertAt;
      if (at === undefined) missed++;
      else if (at <= before) early++;
      else detect.push(at - before);
    }
    return { detect, missed, early, falseReverts: nullOut[k]!.filter((res) => res.revertAt !== undefined).length, nullControls: nullOut[k]!.reduce((n, res) => n + res.controls, 0) };
  };
  line(`${name} fixed`, 0);
  line('  lowered', 1);
  line('  probation', 2);
  // Paired per run, where both detected: lowered ÷ fixed, probation ÷ lowered.
  for (const [i, num, den] of [[0, 1, 0], [1, 2, 1]] as const) {
    for (let r = 0; r < runs; r++) {
      const a = runsOut[den]![r]!.revertAt;
      const b = runsOut[num]![r]!.revertAt;
      if (a !== undefined && b !== undefined && a > before && b > before) ratios[i]!.push((b - before) / (a - before));
    }
  }
}
for (const [k, label] of [[0, `fixed control share ${SHARE}`], [1, 'lowered while the learned arm leads'], [2, `lowered while it leads, ${RAISED} on probation`]] as const) {
  console.log(
    `\nall worlds, ${label}: detection median ${allDetect[k]!.length ? pct(allDetect[k]!, 0.5) : '—'} outcomes, max ${allDetect[k]!.length ? Math.max(...allDetect[k]!) : '—'}; false reverts ${falseTotal[k]} of ${nullRuns} runs without degradation (+ pre-degradation stretches) = ${((100 * falseTotal[k]!) / Math.max(1, nullRuns)).toFixed(1)} % (bound α = ${GUARD_DEFAULTS.alpha * 100} % per run); control decisions before the degradation ${controlTotals[k]}`,
  );
}
const ratioLine = (xs: readonly number[]) => `(${xs.length} runs): median ${xs.length ? pct(xs, 0.5).toFixed(2) : '—'}, min ${xs.length ? Math.min(...xs).toFixed(2) : '—'}, max ${xs.length ? Math.max(...xs).toFixed(2) : '—'}`;
console.log(`lowered ÷ fixed detection time, paired per run where both detected ${ratioLine(ratios[0]!)}; control decisions before the degradation, lowered ÷ fixed: ${(controlTotals[1]! / Math.max(1, controlTotals[0]!)).toFixed(2)}`);
console.log(`probation ÷ lowered detection time, paired per run where both detected ${ratioLine(ratios[1]!)}; control decisions before the degradation, probation ÷ lowered: ${(controlTotals[2]! / Math.max(1, controlTotals[1]!)).toFixed(2)}; in the runs without degradation ${(nullControlTotals[2]! / Math.max(1, nullControlTotals[1]!)).toFixed(2)} (${nullControlTotals.join(' / ')} fixed / lowered / probation)`);
