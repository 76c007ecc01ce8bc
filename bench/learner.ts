/**
 * The learner against simulated worlds it was never tuned on: the generated family (experiments/family/seeds.json,
 * `test` seeds, picked once at random) and the five hand-written worlds, all declared WITHOUT mean/std, run
 * in-process by the same loop the service runs (auto scaling, activation gate, safe start; sim/loop.ts).
 *
 *   node --import tsx bench/learner.ts [--quick] [--seeds test|dev|<n,n,…>] [--named all|none|<a,b>] [--outcomes 5000]
 *                                      [--drift-outcomes 9000] [--explorer squarecb] [--scaling robust|meanstd]
 *                                      [--min-steps N] [--gate none]   (a floor on gradient steps per retrain; no gate: a diagnostic)
 *                                      [--cost-model off|fitted|declared|off,fitted,…] [--cost-only true]
 *                                      [--global-head on] (the reward model's global factor g(x)) [--importance cap:power] (rows weighted by min(cap, p^−power))
 *                                      [--weight-penalty λ] (λ·Σ_i (w_i + v_i) added to the training loss) [--fit-report true] (bench/learner-fit.ts's report per generated world)
 *                                      [--drift-trace true] (drift worlds: detections, retirements, each version's half-life, verdict and true value)
 *                                      [--drift-rule key=value,…] (drift.ts DriftRule overrides, e.g. span=500, halfLifeShare=0.125, forgetAfter=2000,forgetTo=0.25,forgetKeepStart=1)
 *                                      [--wide-start ρ] [--wide-kind cut|random] [--wide-depth 2|inf] [--wide-keep w] [--start-hold N] [--wide-until N] [--weight-prior p] [--up-only on|off]
 *                                      (wide safe-start exploration, its events' training weight floor; the agents' initial weight)
 *                                      [--guard on|off] [--guard-hold N] (the runtime guard's serving-version test and reverts, as the service runs them; off: the candidate arm only)
 *                                      [--candidate-backoff on|off] [--guard-safe-start on|off] (the backoff after refused candidates; the safe start's test and shrink)
 *                                      [--control-min m] [--control-margin x] (the guard's control share floor and margin while the learned arm leads; --control-min 0.05: a fixed share) [--loop-seed k] (another run of the same worlds)
 *                                      [--marginal on] (diagnostic: the static split that maximises the serving version's mean prediction, valued by the truth)
 *                                      [--cold-after-change on|off] (after a detected change, while no version serves: retrains from the untrained prior; default on)
 *                                      [--holdout draw|id] (each retrain's held-out tenth: drawn afresh, the service's, or by decision id among the newest, as the tier retrain; docs/learner.md "The held-out tenth")
 *                                      [--foreign all|i,j,…] (worlds outside the model's class, sim/foreign.ts: entries of experiments/family/foreign-seeds.json)
 *                                      [--backoff-gate on|off|safe-start] (the gate's refusals that show harm count in that backoff, as the guard's; off: the guard's only, the rule before 2026-12-04; safe-start: only while no version serves)
 *   (the cost model of src/learner/usage.ts, several in one run for a same-run comparison; only worlds with a cost weight)
 *
 * Every figure is of the splits actually served (exploration included) over the last quarter of each run, on the
 * requests of that quarter, against baselines computed in the same run on the same requests: the oracle (best
 * split per request), uniform, and the best static split (fitted on those requests). Per world it prints
 * served ÷ oracle (and the greedy split's, beside it), served − best static with a paired 95 % CI, the tokens the
 * served policy needs to match uniform at the world's total (against the oracle's need), and, for drift worlds,
 * the outcomes after the change until a 500-outcome window is back at ≥ 0.95 of the new oracle. Then the
 * distributions over the family. `--quick`: 10 test seeds, no named worlds, 4,000 outcomes (8,000 with drift).
 *
 * On a shared machine the run can be split: `--shard 1/3` runs every third world (worlds i with i % 3 = 0), and
 * `--merge out1.txt,out2.txt,out3.txt` prints the distributions from the shards' outputs (their `ROW` lines).
 */
import { readFileSync } from 'node:fs';
import { loadTf } from '../src/learner/backend.js';
import { DEFAULT_HIDDEN, forward, predict } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { CANDIDATE_BACKOFF_GATE_DEFAULT, GUARD_DEFAULTS, type CandidateBackoffGate } from '../src/learner/guard.js';
import { DEFAULT_GATE, GATE_RULES, NORMAL_GATE } from '../src/learner/gate.js';
import { DEFAULT_DRIFT } from '../src/learner/drift.js';
import { bestStatic, generateWorld, namedWorld, phaseOf, staticSplit, uniformSplitOf, type SimWorld } from '../src/learner/sim/family.js';
import { armWindows, greedyValues, policyAgents, runLoop, servedValues } from '../src/learner/sim/loop.js';
import { loadWorld, polishShares, WORLD_NAMES } from '../src/learner/sim/world.js';
import { DEFAULT_MIN_STEPS } from '../src/learner/trainer.js';
import { flag, foreignWorlds } from './lib.js';
import { fitReport } from './_fit-lib.js';

const quick = process.argv.includes('--quick');
const seedsFile = JSON.parse(readFileSync(new URL('../experiments/family/seeds.json', import.meta.url), 'utf8')) as { test: number[]; dev: number[] };
const seedArg = flag('seeds', 'test');
let seeds = seedArg === 'test' ? seedsFile.test : seedArg === 'dev' ? seedsFile.dev : seedArg === 'none' ? [] : seedArg.split(',').map(Number);
if (quick && seedArg === 'test') seeds = seeds.slice(0, 10);
// Worlds outside the model's class (sim/foreign.ts): `--foreign all` (the 20 seeds of experiments/family/foreign-seeds.json,
// seed i with composition kinds[i % 4]), `--foreign i,j,…` (those entries of the list), `none` (default).
const foreignArg = flag('foreign', 'none');
const foreign = foreignArg === 'none' ? [] : foreignWorlds(foreignArg === 'all' ? 'all' : foreignArg.split(',').map(Number));
const namedArg = flag('named', quick ? 'none' : 'all');
const named = namedArg === 'none' ? [] : namedArg === 'all' ? [...WORLD_NAMES] : namedArg.split(',');
const outcomes = Number(flag('outcomes', quick ? '4000' : '5000'));
const driftOutcomes = Number(flag('drift-outcomes', quick ? '8000' : '9000'));
const explorer = flag('explorer', 'squarecb') as 'squarecb' | 'epsilon';
const scaling = flag('scaling', 'robust') as 'robust' | 'meanstd';
const hidden = Number(flag('hidden', String(DEFAULT_HIDDEN)));
// The reward model's global factor g(x) (model.ts GlobalWeights): on, off.
const globalHead = flag('global-head', 'off') === 'on';
// Importance-weighted training rows (events.ts DatasetOptions.importance): `--importance cap:power`, e.g. 10:1.
const importanceArg = flag('importance', '');
// How each retrain holds out its tenth (events.ts DatasetOptions.holdout): `draw` (the service's) or `id` (by decision id, as the tier retrain; measured, not adopted).
const holdoutArg = flag('holdout', '');
const importance = importanceArg ? { cap: Number(importanceArg.split(':')[0]), power: Number(importanceArg.split(':')[1] ?? 1) } : undefined;
const explore = {
  explorer,
  epsilon: 0.1,
  gamma: Number(flag('gamma', '200')),
  perturbation: Number(flag('perturbation', '0.5')),
  // Only the e^{+δ} perturbations (ExploreOptions.upOnly): on, off.
  ...(flag('up-only', 'off') === 'on' ? { upOnly: true } : {}),
  ...(Number(flag('probe', '0')) > 0 ? { probe: Number(flag('probe', '0')), probeDepth: Number(flag('probe-depth', '1.5')), probeStop: Number(flag('probe-stop', '0.25')), probeKind: flag('probe-kind', 'cut') as 'cut' | 'random', probeDecay: flag('probe-decay', 'on') === 'on' } : {}),
  ...(Number(flag('wide-start', '0')) > 0 ? { wideStart: Number(flag('wide-start', '0')), wideKind: flag('wide-kind', 'cut') as 'cut' | 'random', wideDepth: flag('wide-depth', '2') === 'inf' ? Infinity : Number(flag('wide-depth', '2')) } : {}),
  budget: Number(flag('budget', String(EXPLORE_DEFAULTS.budget))),
  decayFrom: Number(flag('decay-from', String(EXPLORE_DEFAULTS.decayFrom))),
};
const wideKeep = flag('wide-keep', '');
const weightPrior = flag('weight-prior', '');
const startHold = flag('start-hold', '');
const wideUntil = flag('wide-until', '');
const controlShareMin = flag('control-min', '');
// Another run of the same worlds: the loop's random stream offset (the worlds stay the seeds' worlds).
const loopSeed = Number(flag('loop-seed', '0'));
const controlShareMargin = flag('control-margin', '');
// The guard's probation (a raised control share until the serving version has shown it is no worse than the control by more than the margin): `--probation-share 0.05` turns it off.
const probationShare = flag('probation-share', '');
const probationMargin = flag('probation-margin', '');
const controlShare = Number(flag('control-share', String(GUARD_DEFAULTS.controlShare)));
const halfLife = Number(flag('half-life', '1000'));
const window = Number(flag('window', '8000'));
const epochs = Number(flag('epochs', '4'));
const minSteps = flag('min-steps', String(DEFAULT_MIN_STEPS));
// A penalty on the agents' weight heads (trainer.ts TrainOptions.weightPenalty).
const weightPenalty = Number(flag('weight-penalty', '0'));
// The trainer's L2 penalty on the weight matrices (trainer.ts TrainOptions.l2); default the service's.
const l2Arg = flag('l2', '');
// The guard's offset in the candidate arm's tests (loop.ts LoopOptions.guardOffset; default on, as the service).
const guardOffsetOn = flag('guard-offset', 'on') !== 'off';
// The runtime guard's serving-version test and its reverts (as the service runs them): `--guard off` leaves only the
// candidate arm, as the loop ran before it had the serving test.
const guardOn = flag('guard', 'on') !== 'off';
const guardHold = flag('guard-hold', '');
// The guard's backoff after refused candidates and its safe-start check (guard.ts candidateAfter, safeStartVerdict): on, off.
const backoffOn = flag('candidate-backoff', 'on') !== 'off';
// After a detected change, while no version serves: retrains from the untrained prior (drift.ts COLD_AFTER_CHANGE_DEFAULT).
const coldArg = flag('cold-after-change', '');
const safeStartGuardOn = flag('guard-safe-start', 'on') !== 'off';
const safeStartMarginArg = flag('safe-start-margin', '');
// Whether the gate's refusals that show harm count in that backoff (loop.ts candidateBackoffGate; default: the service's).
const backoffGateArg = flag('backoff-gate', '');
const backoffGate: CandidateBackoffGate = backoffGateArg === '' ? CANDIDATE_BACKOFF_GATE_DEFAULT : backoffGateArg === 'safe-start' ? 'safe-start' : backoffGateArg !== 'off';
// Cheaper runs for tuning: evaluate every `--eval-stride`-th request of the last quarter (default 2), skip tokens-to-match.
const evalStride = Number(flag('eval-stride', '2'));
const withTtm = flag('tokens-to-match', 'true') !== 'false';
const candShare = flag('candidate-share', '');
// The candidate share while a detected change is recent (policy.ts candidateShareFor): a number, or `off` (never; the default's DRIFT_CANDIDATE_SHARE otherwise).
const candShareDrift = flag('candidate-share-after-change', '');
// `after:share`: a candidate trained after `after` consecutive refused candidates gets `share` (the loop's candidateShareAfterRefusals; benches only).
const candShareRefusals = flag('candidate-share-after-refusals', '');
// Retrain (and so judge the pending candidate) every this many outcomes (the loop's default 500).
const trainEvery = flag('train-every', '');
const gateTol = flag('gate-tolerance', '');
// The activation gate (`none`: every trained version serves at once, a diagnostic of what the gate holds back;
// `normal`: the normal bound, the rule before; `bootstrap-t:3`, `percentile:1`: interval and looks; a name of
// gate.ts GATE_RULES, e.g. `offset`) and drift
// recovery (`on`: shorter half-life after a change; `window`: train on the events since it only; `off`: neither).
const gateArg = flag('gate', 'bootstrap');
const driftArg = flag('drift-recovery', 'on');
// Overrides of the drift rule's numbers (drift.ts DriftRule), e.g. `--drift-rule z=2,halfLifeShare=0.125`.
const driftRule = Object.fromEntries(flag('drift-rule', '').split(',').filter(Boolean).map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]));
// The cost model (src/learner/usage.ts): off (trained on quality − λ·cost), fitted prices, declared prices; `off,fitted` runs both per world in one run.
const costModels = flag('cost-model', 'off').split(',') as ('off' | 'fitted' | 'declared')[];
// Only the seeds whose world has a cost weight (each keeps its place in the list, so drift seeds stay drift seeds).
const costOnly = flag('cost-only', 'false') === 'true';
// After each generated world: bench/learner-fit.ts's report on the serving version (predicted against true reward per split, agent and task).
const fitContexts = flag('fit-report', 'false') === 'true' ? 300 : 0;
// Drift worlds: after each run, the versions trained from 1,000 outcomes before the change on (training time,
// half-life, the gate's verdict and why, the true greedy value ÷ oracle after the change), the detections and
// retirements, and per 250-outcome window the serving versions and served ÷ oracle.
const driftTrace = flag('drift-trace', 'false') === 'true';

const mean = (xs: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
};
const quantile = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = p * (s.length - 1);
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.min(s.length - 1, lo + 1)]! - s[lo]!) * (i - lo);
};
function pairedCi(a: readonly number[], b: readonly number[]): { diff: number; lo: number; hi: number } {
  const d = a.map((v, i) => v - b[i]!);
  const m = mean(d);
  const sd = Math.sqrt(d.reduce((s, v) => s + (v - m) ** 2, 0) / (d.length - 1));
  const h = (1.96 * sd) / Math.sqrt(d.length);
  return { diff: m, lo: m - h, hi: m + h };
}

interface Row {
  readonly name: string;
  readonly ratio: number;
  readonly greedy: number;
  /** Served ÷ oracle on the requests the learned arm served (not the guard's control). */
  readonly arm?: number;
  readonly diff: { diff: number; lo: number; hi: number };
  readonly oracleNeed: number;
  readonly learnedNeed: number;
  readonly recovery?: number | null;
  readonly recoveryPre?: number | null;
  readonly pre?: number;
  readonly firstActive: number | null;
  readonly refused: number;
  readonly versions: number;
  /** Longest stretch (outcomes) and total outcomes in which a trained version served worse than the default strategy's split. */
  readonly worseStretch?: number;
  readonly worseTotal?: number;
  /** Mean learned arm − default split per outcome over the longest such stretch. */
  readonly worseGap?: number;
  /** Serving versions the runtime guard reverted. */
  readonly reverts?: number;
  /** Served ÷ oracle over the outcomes before the first version served (the safe start), and how many. */
  readonly start?: number;
  readonly startN?: number;
  /** Served − the default strategy's split (true values, same requests), over the whole run and over the safe start. */
  readonly vsDefault?: number;
  readonly startVsDefault?: number;
  /** Gate refusals that showed harm and counted in the candidate backoff (`--backoff-gate on`). */
  readonly gateBackoffs?: number;
}

const merge = flag('merge', '');
if (merge) {
  const all = merge.split(',').flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l.startsWith('ROW ')).map((l) => JSON.parse(l.slice(4)) as Row & { kind: string }));
  // A world measured twice (a stopped shard finished it just before a re-run took it over) counts once: the first.
  const rows = all.filter((r, i) => all.findIndex((x) => x.name === r.name) === i);
  summarise('generated family', rows.filter((r) => r.kind === 'family'));
  summarise('named worlds', rows.filter((r) => r.kind === 'named'));
  summarise("worlds outside the model's class", rows.filter((r) => r.kind === 'foreign'));
  process.exit(0);
}
const marginalDiag = flag('marginal', 'off') === 'on';
const [shardK, shardN] = flag('shard', '1/1').split('/').map(Number) as [number, number];
// Worlds already measured by an earlier (stopped) run of the same shard: `--skip gen-1,drift`.
const skip = new Set(flag('skip', '').split(',').filter(Boolean));
const { tf, backend } = await loadTf();
const t0 = Date.now();
console.log(`bench/learner: backend ${backend}; ${seeds.length} family seeds (${seedArg}) + ${named.length} named worlds; ${outcomes} outcomes per world (${driftOutcomes} with drift); explorer ${explorer} ${JSON.stringify(explore)}; control share ${controlShare}${probationShare || probationMargin ? ` (probation ${probationShare || 'default'} until the lead's lower bound clears −${probationMargin || 'default'})` : ''}; hidden ${hidden}; global head ${globalHead ? 'on' : 'off'}; importance ${importanceArg || 'none'}; weight penalty ${weightPenalty}; l2 ${l2Arg || 'default'}; guard offset ${guardOffsetOn ? 'on' : 'off'}; serving guard ${guardOn ? 'on' : 'off'}${guardHold ? ` (hold ${guardHold})` : ''}; candidate backoff ${backoffOn ? `on (gate refusals with harm ${backoffGate === 'safe-start' ? 'count during the safe start' : backoffGate ? 'count' : 'do not count'})` : 'off'}; safe-start guard ${safeStartGuardOn ? 'on' : 'off'}; half-life ${halfLife}; window ${window}; epochs ${epochs}; min steps ${minSteps}; scaling ${scaling}; gate ${gateArg}; drift recovery ${driftArg}${Object.keys(driftRule).length ? ` ${JSON.stringify(driftRule)}` : ''}; cost model ${costModels.join(', ')}; every declaration without mean/std`);

/** Smallest share f of the total at which `value(f)` reaches `goal` (bisection; value grows with the total). */
function tokensToMatch(value: (total: number) => number, total: number, goal: number): number {
  if (value(total) < goal) return 1;
  let lo = 0.05;
  let hi = 1;
  for (let it = 0; it < 8 && hi - lo > 0.005; it++) {
    const mid = (lo + hi) / 2;
    if (value(Math.round(total * mid)) >= goal) hi = mid;
    else lo = mid;
  }
  return hi;
}

async function runWorld(world: SimWorld, seed: number, costModel: 'off' | 'fitted' | 'declared' = 'off'): Promise<Row> {
  const w0 = Date.now();
  // Drift worlds run on for 5,000 outcomes after the change at least (the recovery target's horizon).
  const N = world.driftAt !== undefined ? Math.max(driftOutcomes, world.driftAt + 5000) : outcomes;
  const gate = gateArg === 'none' ? null : gateArg === 'normal' ? NORMAL_GATE : gateArg === 'bootstrap' ? DEFAULT_GATE : GATE_RULES[gateArg] ? GATE_RULES[gateArg] : { ...DEFAULT_GATE, interval: gateArg.split(':')[0] as 'bootstrap-t' | 'percentile' | 'normal', looks: Number(gateArg.split(':')[1] ?? 1) };
  const judged: { t: number; version: number; pass: boolean; reason: string }[] = [];
  const onJudge = driftTrace && world.driftAt !== undefined ? (j: { t: number; candidate: { version: number }; verdict: { pass: boolean; reason: string } }) => void judged.push({ t: j.t, version: j.candidate.version, pass: j.verdict.pass, reason: j.verdict.reason }) : undefined;
  const res = await runLoop(tf, { ...(coldArg ? { coldAfterChange: coldArg === 'on' } : {}), ...(onJudge ? { onJudge } : {}), ...(guardOffsetOn ? {} : { guardOffset: false }), ...(guardOn ? {} : { guard: false }), ...(backoffOn ? { candidateBackoffGate: backoffGate } : { candidateBackoff: false }), ...(safeStartGuardOn ? {} : { guardSafeStart: false }), ...(safeStartMarginArg ? { safeStartMargin: safeStartMarginArg === 'off' ? null : Number(safeStartMarginArg) } : {}), ...(guardHold ? { guardHold: Number(guardHold) } : {}), world, outcomes: N, seed: seed + 7919 * loopSeed, explore, evalContexts: 0, checkpointEvery: N, scalingMethod: scaling, hidden, globalHead, ...(importance ? { importance } : {}), ...(holdoutArg ? { holdout: holdoutArg as 'id' | 'draw' } : {}), controlShare, ...(controlShareMin ? { controlShareMin: Number(controlShareMin) } : {}), ...(controlShareMargin ? { controlShareMargin: Number(controlShareMargin) } : {}), ...(probationShare ? { probationShare: Number(probationShare) } : {}), ...(probationMargin ? { probationMargin: Number(probationMargin) } : {}), halfLife, window, ...(wideKeep ? { wideKeep: Number(wideKeep) } : {}), ...(weightPrior ? { weightPrior: Number(weightPrior) } : {}), ...(startHold ? { startHold: Number(startHold) } : {}), ...(wideUntil ? { wideUntil: Number(wideUntil) } : {}), train: { epochs, ...(minSteps ? { minSteps: Number(minSteps) } : {}), ...(weightPenalty > 0 ? { weightPenalty } : {}), ...(l2Arg ? { l2: Number(l2Arg) } : {}) }, ...(candShare ? { candidateShare: Number(candShare) } : {}), ...(candShareRefusals ? { candidateShareAfterRefusals: { after: Number(candShareRefusals.split(':')[0]), share: Number(candShareRefusals.split(':')[1]) } } : {}), ...(candShareDrift ? { candidateShareAfterChange: candShareDrift === 'off' ? null : Number(candShareDrift) } : {}), ...(trainEvery ? { trainEvery: Number(trainEvery) } : {}), ...(gateTol ? { gateTolerance: Number(gateTol) } : {}), gate, costModel, ...(driftArg === 'off' ? { driftRecovery: null } : { driftRecovery: { ...DEFAULT_DRIFT, ...driftRule, ...(driftArg === 'window' ? { mode: 'window' as const } : {}) } }) });
  const from = Math.floor(N * 0.75);
  const phase = phaseOf(world, from);
  // Every second request of the last quarter (the oracle is a numerical search on generated worlds).
  const keep = (_: unknown, i: number) => i % evalStride === 0;
  const ctx = res.contexts.slice(from).filter(keep);
  const served = Array.from(res.served.subarray(from)).filter(keep);
  const oracle = ctx.map((x) => world.expected(phase, x, world.oracle(phase, x, world.totalTokens)));
  const shares = bestStatic(world, phase, ctx.filter((_, i) => i % Math.ceil(ctx.length / 300) === 0), world.totalTokens);
  const st = staticSplit(world, shares, world.totalTokens);
  const stat = ctx.map((x) => world.expected(phase, x, st));
  const uni = uniformSplitOf(world, world.totalTokens);
  const uniV = ctx.map((x) => world.expected(phase, x, uni));
  const agents = policyAgents(world);
  const model = res.serving;
  const greedy = ctx.map((x) => world.expected(phase, x, model ? greedyBudgets(forward(model.weights, model.encoder.encode(world.features(x))), agents, world.totalTokens) : uni));
  if (marginalDiag && model) {
    // Diagnostic: the static split that maximises the final model's mean prediction over these requests, valued truly.
    const sample = ctx.filter((_, i) => i % Math.ceil(ctx.length / 300) === 0);
    const hs = sample.map((x) => forward(model.weights, model.encoder.encode(world.features(x))));
    const mv = (s: readonly number[]) => {
      const b = staticSplit(world, s, world.totalTokens);
      let v = 0;
      for (const h of hs) v += predict(h, b);
      return v / hs.length;
    };
    const m0 = new Array<number>(world.agents.length).fill(0);
    for (const h of hs) greedyBudgets(h, agents, world.totalTokens).forEach((b, i) => (m0[i]! += b / world.totalTokens / hs.length));
    const msp = staticSplit(world, polishShares(m0, mv, world.agents.length), world.totalTokens);
    const mval = ctx.map((x) => world.expected(phase, x, msp));
    console.log(`  ${world.name}: the model's static split ÷ oracle ${(mean(mval) / mean(oracle)).toFixed(4)} (greedy ${(mean(greedy) / mean(oracle)).toFixed(4)}, best static ${(mean(stat) / mean(oracle)).toFixed(4)}, served ${(mean(served) / mean(oracle)).toFixed(4)})`);
  }
  const ratio = mean(served) / mean(oracle);
  // The learned arm alone: the same requests without those the guard's control arm served (exploration included).
  const ctl = Array.from(res.controlServed.subarray(from)).filter(keep);
  const armIdx = served.map((_, i) => i).filter((i) => ctl[i] === 0);
  const arm = mean(armIdx.map((i) => served[i]!)) / mean(armIdx.map((i) => oracle[i]!));
  const diff = pairedCi(served, stat);
  // Tokens to match uniform at the world's total, on 200 of the quarter's requests.
  const sub = ctx.filter((_, i) => i % Math.ceil(ctx.length / 60) === 0);
  const goal = mean(sub.map((x) => world.expected(phase, x, uni)));
  const oracleNeed = !withTtm ? 1 : tokensToMatch((T) => mean(sub.map((x) => world.expected(phase, x, world.oracle(phase, x, T)))), world.totalTokens, goal);
  const learnedNeed = !withTtm ? 1 : tokensToMatch((T) => mean(servedValues(world, phase, model, explore, sub, T, controlShare)), world.totalTokens, goal);
  let recovery: number | null | undefined;
  // Also: back to the level served before the change (served ÷ oracle over the 1,000 outcomes before it, less 0.02), which is what drift recovery controls on worlds the learner never brings to 0.95.
  let recoveryPre: number | null | undefined;
  let pre: number | undefined;
  if (world.driftAt !== undefined) {
    recovery = null;
    recoveryPre = null;
    const dA = world.driftAt;
    const before = res.contexts.slice(dA - 1000, dA).filter((_, i) => i % 4 === 0);
    pre = mean(Array.from(res.served.subarray(dA - 1000, dA)).filter((_, i) => i % 4 === 0)) / mean(before.map((x) => world.expected(0, x, world.oracle(0, x, world.totalTokens))));
    for (let s = world.driftAt; s + 500 <= N; s += 500) {
      const win = res.contexts.slice(s, s + 500).filter((_, i) => i % 4 === 0);
      const o = mean(win.map((x) => world.expected(1, x, world.oracle(1, x, world.totalTokens))));
      const v = mean(Array.from(res.served.subarray(s, s + 500)).filter((_, i) => i % 4 === 0));
      if (recoveryPre === null && v / o >= Math.min(0.95, pre - 0.02)) recoveryPre = s + 500 - world.driftAt;
      if (v / o >= 0.95) {
        recovery = s + 500 - world.driftAt;
        break;
      }
    }
  }
  // Runtime-guard target: the longest stretch (consecutive 250-outcome windows) in which a trained version served and
  // what the learned arm served (exploration included) was worth less than the default strategy's split on the same
  // requests: what the gate, drift recovery and the runtime guard (unless `--guard off`) let through; with the longest
  // stretch's mean shortfall (learned arm − default split, per outcome), the size of effect the guard had to find.
  let worseStretch = 0;
  let worseTotal = 0;
  let worseGap = 0;
  let run = 0;
  let gap = 0;
  for (const { trained, dv, n: armN } of armWindows(world, res, uni)) {
    const worse = trained && armN > 0 && dv / armN < 0;
    gap = worse ? (gap * run + (dv / armN) * 250) / (run + 250) : 0;
    run = worse ? run + 250 : 0;
    if (worse) worseTotal += 250;
    if (run > worseStretch) worseGap = gap;
    worseStretch = Math.max(worseStretch, run);
  }
  if (onJudge && world.driftAt !== undefined) traceDrift(world, res, judged);
  if (fitContexts > 0 && 'spec' in world) fitReport(world as Parameters<typeof fitReport>[0], res.serving, phaseOf(world, N - 1), seed, fitContexts);
  const firstActive = res.versions.find((v) => v.active)?.at ?? null;
  // The safe start's own served quality (the last-quarter figures do not see it): the outcomes before a trained version
  // first served one (the first active version serves from the retrain after the one that trained it; before
  // 2026-12-06 this window ended at the outcome that version was trained at, a retrain interval short).
  const firstServing = res.servingVersion.findIndex((v) => v > 0);
  const startN = firstServing >= 0 ? firstServing : N;
  const startIdx = Array.from({ length: Math.ceil(startN / evalStride) }, (_, i) => i * evalStride);
  const start = mean(startIdx.map((i) => res.served[i]!)) / mean(startIdx.map((i) => world.expected(phaseOf(world, i), res.contexts[i], world.oracle(phaseOf(world, i), res.contexts[i], world.totalTokens))));
  const refused = res.versions.filter((v) => !v.active).length;
  // Served − the default strategy's split (uniform in the loop) on the same requests, every evalStride-th outcome:
  // over the whole run, and over the safe start (before the first version served).
  const allIdx = Array.from({ length: Math.ceil(N / evalStride) }, (_, i) => i * evalStride);
  const gapAt = (i: number) => res.served[i]! - world.expected(phaseOf(world, i), res.contexts[i], uni);
  const vsDefault = mean(allIdx.map(gapAt));
  const startVsDefault = mean(startIdx.map(gapAt));
  const row: Row = { name: costModels.length > 1 ? `${world.name}[${costModel}]` : world.name, ratio, greedy: mean(greedy) / mean(oracle), arm, diff, oracleNeed, learnedNeed, ...(recovery !== undefined ? { recovery, ...(recoveryPre !== undefined ? { recoveryPre } : {}), ...(pre !== undefined ? { pre } : {}) } : {}), firstActive, refused, versions: res.versions.length, worseStretch, worseTotal, worseGap, reverts: res.guardReverts.length, start, startN, vsDefault, startVsDefault, gateBackoffs: res.gateBackoffs.length };
  console.log(
    `${row.name.padEnd(14)} served/oracle ${ratio.toFixed(3)} (learned arm ${arm.toFixed(3)}, greedy ${row.greedy.toFixed(3)}, uniform ${(mean(uniV) / mean(oracle)).toFixed(3)}, static ${(mean(stat) / mean(oracle)).toFixed(3)})` +
      `  served−static ${diff.diff >= 0 ? '+' : ''}${diff.diff.toFixed(4)} [${diff.lo.toFixed(4)}, ${diff.hi.toFixed(4)}]` +
      `  tokens-to-match ${learnedNeed.toFixed(2)} (oracle ${oracleNeed.toFixed(2)})` +
      (recovery !== undefined ? `  drift→≥0.95 after ${recovery ?? 'never'} (→ pre-change level ${pre!.toFixed(3)} − 0.02 after ${recoveryPre ?? 'never'})` : '') +
      `  served−default ${vsDefault >= 0 ? '+' : ''}${vsDefault.toFixed(4)} (safe start ${startVsDefault >= 0 ? '+' : ''}${startVsDefault.toFixed(4)})` +
      `  safe start ${start.toFixed(3)} (${startN})  first served v@${firstActive ?? '—'}, ${refused}/${res.versions.length} refused${res.changes.length ? `, change detected at ${res.changes.join(',')}` : ''}${res.retired.length ? `, serving version retired at ${res.retired.join(',')}` : ''}, ${res.guardReverts.length ? `guard reverted ${res.guardReverts.map((g) => `v${g.from}→${g.to ? `v${g.to}` : 'safe start'}@${g.at}`).join(',')}, ` : ''}${res.guardRefused.length ? `guard refused ${res.guardRefused.length} candidates, ` : ''}${res.gateBackoffs.length ? `gate refusals with harm backed off ${res.gateBackoffs.map((g) => `v${g.version}@${g.at}→${g.until}`).join(',')}, ` : ''}${res.safeStartShrinks.length ? `safe start shrunk ${res.safeStartShrinks.map((x) => `→${x.scale}@${x.at}${x.by === 'cost' ? ' (cost)' : ''}`).join(',')}, ` : ''}worse than default ${worseStretch} in a row${worseStretch ? ` (shortfall ${worseGap.toFixed(4)})` : ''} (${worseTotal} in all)  ${((Date.now() - w0) / 1000).toFixed(0)}s  | ${world.summary}`,
  );
  return row;
}

/** The drift trace (`--drift-trace true`): what detection, the gate and retirement did around the change. */
function traceDrift(world: SimWorld, res: Awaited<ReturnType<typeof runLoop>>, judged: readonly { t: number; version: number; pass: boolean; reason: string }[]): void {
  const dA = world.driftAt!;
  const from = Math.max(0, dA - 1000);
  const N = res.served.length;
  const pick = res.contexts.slice(dA).filter((_, i) => i % 25 === 0).slice(0, 200);
  const orc = mean(pick.map((x) => world.expected(1, x, world.oracle(1, x, world.totalTokens))));
  const uniV = mean(pick.map((x) => world.expected(1, x, uniformSplitOf(world, world.totalTokens))));
  console.log(`  trace ${world.name}: change at ${dA}; detected at retrains ${res.detected.join(',') || '—'} (placed at ${res.changes.join(',') || '—'}); serving version retired at ${res.retired.join(',') || '—'}; uniform after the change ${(uniV / orc).toFixed(3)} of the oracle`);
  for (const v of res.versions) {
    if (v.at < from) continue;
    const j = judged.find((x) => x.version === v.version);
    const g = mean(greedyValues(world, 1, v, pick)) / orc;
    console.log(`    v${v.version} trained@${v.at} (${v.at >= dA ? '+' : ''}${v.at - dA}) window ${v.window} half-life ${v.halfLife}${v.forget ? ` forgets [${v.forget.from}, ${v.forget.before}) ×${v.forget.weight.toFixed(2)}` : ''}  greedy after change ${g.toFixed(3)}  ${j ? `judged@${j.t}: ${j.pass ? 'PASSED' : 'refused'} — ${j.reason}` : 'not judged (guard refused or run ended)'}`);
  }
  const row: string[] = [];
  for (let s = from; s + 250 <= N; s += 250) {
    const ph = phaseOf(world, s);
    const win = res.contexts.slice(s, s + 250).filter((_, i) => i % 5 === 0);
    const o = mean(win.map((x) => world.expected(ph, x, world.oracle(ph, x, world.totalTokens))));
    const v = mean(Array.from(res.served.subarray(s, s + 250)).filter((_, i) => i % 5 === 0));
    const sv = [...new Set(Array.from(res.servingVersion.subarray(s, s + 250)))].join('/');
    row.push(`${s - dA >= 0 ? '+' : ''}${s - dA}:v${sv} ${(v / o).toFixed(3)}`);
  }
  for (let i = 0; i < row.length; i += 8) console.log(`    ${row.slice(i, i + 8).join('  ')}`);
}

function summarise(label: string, rows: readonly Row[]): void {
  if (rows.length === 0) return;
  const r = rows.map((x) => x.ratio);
  const d = rows.map((x) => x.diff.diff);
  const below = rows.filter((x) => x.diff.hi < 0);
  console.log(`\n${label}: ${rows.length} worlds`);
  console.log(`  served ÷ oracle   mean ${mean(r).toFixed(4)}  median ${quantile(r, 0.5).toFixed(3)}  p10 ${quantile(r, 0.1).toFixed(3)}  min ${Math.min(...r).toFixed(3)}   (targets: median ≥ 0.97, p10 ≥ 0.93)`);
  const arms = rows.filter((x) => x.arm !== undefined).map((x) => x.arm!);
  if (arms.length) console.log(`  learned arm ÷ oracle (served without the guard's control decisions)   median ${quantile(arms, 0.5).toFixed(3)}  p10 ${quantile(arms, 0.1).toFixed(3)}  min ${Math.min(...arms).toFixed(3)}`);
  console.log(`  greedy ÷ oracle   median ${quantile(rows.map((x) => x.greedy), 0.5).toFixed(3)}  p10 ${quantile(rows.map((x) => x.greedy), 0.1).toFixed(3)}`);
  console.log(`  served − static   median ${quantile(d, 0.5).toFixed(4)}  p10 ${quantile(d, 0.1).toFixed(4)}  min ${Math.min(...d).toFixed(4)}; significantly below static (CI under 0) on ${below.length}: ${below.map((x) => x.name).join(', ') || 'none'}`);
  const tm = rows.filter((x) => x.oracleNeed <= 0.7);
  const tmFail = tm.filter((x) => x.learnedNeed > x.oracleNeed + 0.05);
  console.log(`  tokens-to-match   ${tm.length} worlds where the oracle needs ≤ 0.7× (${tm.map((x) => x.name).join(', ') || 'none'}); within 0.05 of the oracle on ${tm.length - tmFail.length}${tmFail.length ? `; not on ${tmFail.map((x) => `${x.name} (${x.learnedNeed.toFixed(2)} vs ${x.oracleNeed.toFixed(2)})`).join(', ')}` : ''}`);
  const dr = rows.filter((x) => x.recovery !== undefined);
  if (dr.length) console.log(`  drift             back to ≥ 0.95 of the oracle within 5,000 outcomes on ${dr.filter((x) => x.recovery !== null && x.recovery! <= 5000).length} of ${dr.length} (${dr.map((x) => `${x.name}: ${x.recovery ?? 'never'}`).join(', ')})`);
  const drp = dr.filter((x) => x.pre !== undefined);
  if (drp.length) console.log(`  drift             back to min(0.95, the level served before the change − 0.02) within 5,000 outcomes on ${drp.filter((x) => x.recoveryPre != null && x.recoveryPre <= 5000).length} of ${drp.length} (${drp.map((x) => `${x.name}: ${x.recoveryPre ?? 'never'} (pre ${x.pre!.toFixed(3)})`).join(', ')})`);
  const ws = rows.filter((x) => x.worseStretch !== undefined);
  if (ws.length) console.log(`  worse than default longest stretch in which a trained version served below the default strategy's split (250-outcome windows; serving guard ${guardOn ? 'on' : 'off'}): median ${quantile(ws.map((x) => x.worseStretch!), 0.5)}, max ${Math.max(...ws.map((x) => x.worseStretch!))} (${ws.filter((x) => x.worseStretch! > 0).map((x) => `${x.name}: ${x.worseStretch}${x.worseGap !== undefined ? ` at ${x.worseGap.toFixed(4)}` : ''}`).join(', ') || 'none'})`);
  const rv = rows.filter((x) => (x.reverts ?? 0) > 0);
  console.log(`  runtime guard     reverted a serving version on ${rv.length} of ${rows.length} worlds (${rv.map((x) => `${x.name}: ${x.reverts}`).join(', ') || 'none'})`);
  const st = rows.filter((x) => x.start !== undefined);
  if (st.length) console.log(`  safe start        served ÷ oracle before the first version served: median ${quantile(st.map((x) => x.start!), 0.5).toFixed(3)}, mean ${mean(st.map((x) => x.start!)).toFixed(3)}; outcomes in it: median ${quantile(st.map((x) => x.startN!), 0.5)}`);
  const vd = rows.filter((x) => x.vsDefault !== undefined);
  if (vd.length) console.log(`  vs the default    served − default split, whole run: mean ${mean(vd.map((x) => x.vsDefault!)).toFixed(4)} (below on ${vd.filter((x) => x.vsDefault! < 0).length} of ${vd.length}); over the safe start: mean ${mean(vd.map((x) => x.startVsDefault!)).toFixed(4)}; gate refusals that backed off: ${vd.reduce((s, x) => s + (x.gateBackoffs ?? 0), 0)}`);
  const fa = rows.map((x) => x.firstActive);
  console.log(`  gate              first version served at outcome median ${quantile(fa.map((v) => v ?? Infinity), 0.5)}; never on ${fa.filter((v) => v === null).length}; refused ${rows.reduce((s, x) => s + x.refused, 0)} of ${rows.reduce((s, x) => s + x.versions, 0)} versions`);
}

const family = new Map<string, Row[]>(costModels.map((c) => [c, []]));
const namedRows = new Map<string, Row[]>(costModels.map((c) => [c, []]));
const foreignRows: Row[] = [];
const jobs: (() => Promise<void>)[] = [
  ...seeds.map((seed, i) => async () => {
    if (skip.has(`gen-${seed}`)) return;
    // Every fourth seed of the dev and test lists is a drift world; a seed named in an explicit list is one iff it is
    // one in the list it comes from (so `--seeds 4,8,12` runs the dev drift worlds as drift worlds).
    const listed = (list: readonly number[]) => list.indexOf(seed) % 4 === 3;
    const drift = seedArg === 'test' || seedArg === 'dev' ? i % 4 === 3 : listed(seedsFile.dev) || listed(seedsFile.test);
    if (costOnly && generateWorld(seed).costWeight === 0) return;
    for (const cm of costModels) {
      const row = await runWorld(generateWorld(seed, drift ? { driftAt: Math.round(driftOutcomes / 2) } : {}), seed, cm);
      family.get(cm)!.push(row);
      console.log(`ROW ${JSON.stringify({ ...row, kind: 'family' })}`);
    }
  }),
  ...named.map((name) => async () => {
    if (skip.has(name)) return;
    for (const cm of costModels) {
      const row = await runWorld(namedWorld(loadWorld(name)) as SimWorld, 7, cm);
      namedRows.get(cm)!.push(row);
      console.log(`ROW ${JSON.stringify({ ...row, kind: 'named' })}`);
    }
  }),
  ...foreign.map(({ seed, world }) => async () => {
    if (skip.has(world.name)) return;
    const row = await runWorld(world as SimWorld, seed, 'off');
    foreignRows.push(row);
    console.log(`ROW ${JSON.stringify({ ...row, kind: 'foreign' })}`);
  }),
];
for (const [i, job] of jobs.entries()) if (i % shardN === shardK - 1) await job();
for (const cm of costModels) {
  const tag = costModels.length > 1 ? ` (cost model ${cm})` : '';
  summarise(`generated family${tag}`, family.get(cm)!);
  summarise(`named worlds${tag}`, namedRows.get(cm)!);
}
summarise("worlds outside the model's class", foreignRows);
console.log(`\nbench/learner took ${((Date.now() - t0) / 60000).toFixed(1)} min`);
