import { DEFAULT_TRAIN_EVERY } from '../kind.js';
import type { Tf } from '../backend.js';
import { buildTrainingData, type LoggedEvent } from '../events.js';
import { compileFeatures, fitScaling, type FeatureEncoder, type ScalingMethod } from '../features.js';
import { DEFAULT_GATE, gateVerdict, retireVerdict, type GateInput, type GateRule, type GateVerdict } from '../gate.js';
import { forward, initialWeights, predict, rescaleInputs, type ModelWeights } from '../model.js';
import { guardOffset } from '../control-arm.js';
import { CANDIDATE_SHARE, candidateShareFor, DRIFT_CANDIDATE_SHARE, candidatesAround, decide, decideAround, greedyBudgets, optionsFor, SAFE_START_EPSILON, SAFE_START_MIN_SCALE, safeStartCandidateShare, signedPerturbation, withCandidate, type ExploreOptions } from '../policy.js';
import { accumulate, adaptiveControlShare, addCandidateEvidence, addSafeStartReward, candidateAfter, CANDIDATE_BACKOFF_GATE_DEFAULT, candidateVerdict, EMPTY_CANDIDATE_EVIDENCE, gateBackoffApplies, gateShowsHarm, type CandidateBackoffGate, EMPTY_SAFE_START, GUARD_DEFAULTS, judge, NEW_RUN, revertTarget, SAFE_START_MARGIN_DEFAULT, safeStartStep, type GuardRun, type SafeStartEvidence } from '../guard.js';
import { checkedVersions, COLD_AFTER_CHANGE_DEFAULT, DEFAULT_DRIFT, forgetSpan, forgetWeight, residualCheck, windowAfterChange, type DriftRule, type ForgetSpan } from '../drift.js';
import { mulberry32 } from '../rng.js';
import { canFitCost, fitCost } from '../usage.js';
import { trainModel, type TrainMetrics, type TrainOptions } from '../trainer.js';
import { bestStatic, namedWorld, phaseOf, staticSplit, uniformSplitOf, type SimWorld } from './family.js';
import { bestStaticShares, contextFeatures, expectedQuality, oracleBudgets, staticBudgets, uniformBudgets, type SimContext, type World } from './world.js';

/**
 * The learning loop in-process: the service's policy, scaling, dataset, trainer, activation gate and safe start
 * (no HTTP, no Redis), for benches and tests that need tens of thousands of outcomes quickly. What it serves is
 * what the service would serve: the default strategy (uniform here) explored around until a version clears the
 * gate, then the serving version's exploring policy, with the pending candidate version's split mixed in
 * (CANDIDATE_SHARE). Every retrain first puts the pending candidate to the gate (on the decisions logged since it
 * was trained), then refits the feature scaling on its window, warm-starts from the newest trained version (its
 * inputs re-expressed in the new scaling) and makes the result the new candidate. The runtime guard runs as the
 * service's does: the candidate arm, and the serving version's test against the control arm, which reverts one version
 * back or to the safe start and holds activations for a while (guard.ts; `guard`, `guardHold`).
 */
export interface LoopOptions {
  /** A hand-written world (experiments/worlds) or any SimWorld (the generated family). */
  readonly world: World | SimWorld;
  readonly outcomes: number;
  readonly seed: number;
  readonly explore: ExploreOptions;
  /** Retrain every this many outcomes. Default: the service's (kind.ts DEFAULT_TRAIN_EVERY, 250). */
  readonly trainEvery?: number;
  /** Train on at most this many newest events. Default 8000. */
  readonly window?: number;
  readonly halfLife?: number;
  readonly train?: TrainOptions;
  /** Evaluate the greedy policy every this many outcomes. Default 1000. */
  readonly checkpointEvery?: number;
  /** Held-out contexts for the greedy evaluation at checkpoints. Default 1000 (0: no checkpoint evaluation). */
  readonly evalContexts?: number;
  /** Fit feature scaling at each retrain (the service does). Default true. */
  readonly autoScale?: boolean;
  readonly scalingMethod?: ScalingMethod;
  /** The activation gate; null: every trained version serves at once (the behaviour before the gate). */
  readonly gate?: GateRule | null;
  /** Serve the default strategy until a version clears the gate (the service does). Default true. */
  readonly safeStart?: boolean;
  /** Hidden units of the model. Default: the service's (initialWeights). */
  readonly hidden?: number;
  /** A global factor g(x) in the reward model (model.ts GlobalWeights). Default off, as in the service. */
  readonly globalHead?: boolean;
  /** Importance weighting of the training rows (events.ts DatasetOptions.importance). Default none. */
  readonly importance?: { readonly cap: number; readonly power: number };
  /** How a retrain holds out its tenth (events.ts DatasetOptions.holdout); default the service's (`draw`). Benches only. */
  readonly holdout?: 'id' | 'draw';
  /** Share of decisions that serve the pending candidate's split. Default: the service's (CANDIDATE_SHARE). */
  readonly candidateShare?: number;
  /**
   * The share instead for a candidate trained while a detected change was recent (drift recovery shortened its
   * half-life; policy.ts candidateShareFor). Default: the service's (DRIFT_CANDIDATE_SHARE); null: never.
   */
  readonly candidateShareAfterChange?: number | null;
  /**
   * Benches only (measured, not adopted; docs/learner.md "Drift recovery"): a candidate trained after at least `after`
   * consecutive refused candidates (gate or guard) gets `share` of the decisions instead. Default: none.
   */
  readonly candidateShareAfterRefusals?: { readonly after: number; readonly share: number };
  /** Share of the total two splits may differ by and count as one action in the gate. Default: the gate's. */
  readonly gateTolerance?: number;
  /** Share of decisions the runtime guard's control arm serves the default strategy (uniform here). Default: the service's (GUARD_DEFAULTS). */
  readonly controlShare?: number;
  /** The control share's floor and margin while a trained version leads the control (guard.ts adaptiveControlShare); min ≥ controlShare: a fixed share. */
  readonly controlShareMin?: number;
  readonly controlShareMargin?: number;
  /** The control share, and the shortfall it rules out, while a serving version is on probation (guard.ts adaptiveControlShare; strategy params probationShare, probationMargin). */
  readonly probationShare?: number;
  readonly probationMargin?: number;
  /** Drift recovery (drift.ts): shorten the window after a detected change. Default: the service's (DEFAULT_DRIFT); null: off. */
  readonly driftRecovery?: DriftRule | null;
  /**
   * The cost model (usage.ts): on a world with a cost weight whose outcomes report usage, the quality model is trained
   * on quality alone and the version gets a cost part (per-agent demand from the reported usage, prices declared by
   * the world or fitted from cost and usage). 'off': trained on quality − λ·cost, as before. Default 'off'.
   */
  readonly costModel?: 'off' | 'fitted' | 'declared';
  /**
   * Training weight floor of the events a wide safe-start split served (ExploreOptions.wideStart): such an event weighs
   * max(its recency weight, this), so what it shows about starving an agent outlives the half-life. Default: none
   * (they decay like every event).
   */
  readonly wideKeep?: number;
  /** The safe start explores wide (ExploreOptions.wideStart) only before this outcome (a safe start after it, e.g. after a retirement, does not). Default: always. */
  readonly wideUntil?: number;
  /**
   * The first version may serve only after this many outcomes (the safe start, with its wide exploration, serves
   * until then; a candidate that passes the gate earlier is refused as held). Default 0: as the service.
   */
  readonly startHold?: number;
  /**
   * After a detected change, while no trained version serves (drift recovery retired it, or the guard reverted to the
   * safe start) and the change is within the training window: retrains start from the untrained prior instead of the
   * newest fit. Default: the service's (COLD_AFTER_CHANGE_DEFAULT).
   */
  readonly coldAfterChange?: boolean;
  /** Every agent's initial saturating weight (model.ts initialWeights `weightPrior`). Default: the service's (0.5). */
  readonly weightPrior?: number;
  /** The runtime guard's candidate arm (guard.ts candidateVerdict; needs the control arm), checked every 25 outcomes as the service's tick would. Default true. */
  readonly guardCandidate?: boolean;
  /** After candidates the guard refused in a row, the next waits (guard.ts candidateAfter), and a refused one is no warm start. Default true, as in the service. */
  readonly candidateBackoff?: boolean;
  /**
   * The activation gate's refusals that show harm (guard.ts gateShowsHarm: an estimate below −δ against the default or
   * the serving version) count in that backoff like the guard's. Default CANDIDATE_BACKOFF_GATE_DEFAULT, as in the
   * service ('safe-start': only those judged while no trained version serves); true: all of them; false: only the
   * guard's refusals count (the rule before 2026-12-04). Needs `candidateBackoff`.
   */
  readonly candidateBackoffGate?: CandidateBackoffGate;
  /** The safe start's learned traffic judged against the control arm, its exploration halved when worse (guard.ts safeStartVerdict). Default true, as in the service. */
  readonly guardSafeStart?: boolean;
  /**
   * The safe start's cost test beside it (guard.ts safeStartCheck, the strategy's `safeStartMargin`): the exploration's
   * shortfall per decision against the default split, from the randomisation inside the learned arm (the candidate's
   * plays left out); worse than −margin halves the exploration rate alone. null: the test does not act (the control
   * test alone, at its full level). Default: the service's (SAFE_START_MARGIN_DEFAULT).
   */
  readonly safeStartMargin?: number | null;
  /**
   * The runtime guard's test of the serving versions against the control arm (guard.ts accumulate/judge, the
   * service's guard-monitor `check`), every 25 outcomes as the service's tick would. Worse: a revert as the service's
   * (revertTarget: one version back, else the safe start serves) and activations held for `guardHold` outcomes.
   * Default true (needs the control arm).
   */
  readonly guard?: boolean;
  /** Outcomes after a guard revert during which a candidate that clears the gate is held, not activated. Default: the service's (GUARD_DEFAULTS.holdOutcomes). */
  readonly guardHold?: number;
  /**
   * The guard's offset (ControlMeta `z`): the candidate arm's tests take each reward less the serving version's
   * predicted reward of the control's split, as the service's do. Default true; false: realised rewards (a bench
   * option, `--guard-offset off`).
   */
  readonly guardOffset?: boolean;
  /**
   * Safety harness (benches only): versions for which this returns true are trained on 1 − quality (a deliberately
   * bad candidate that prefers the splits that do worst). Such a version is not the next retrain's warm start, so
   * the rest of the run is what it would have been. Default: none.
   */
  readonly flipReward?: (version: number) => boolean;
  /** Called with every gate verdict in the loop and the exact input it was judged on (benches: diagnosis, rules judged in shadow). */
  readonly onJudge?: (j: { readonly t: number; readonly phase: 0 | 1; readonly look: number; readonly candidate: LoopVersion; readonly serving: LoopVersion | undefined; readonly input: GateInput; readonly verdict: GateVerdict }) => GateVerdict | void;
}

export interface Checkpoint {
  readonly outcomes: number;
  readonly phase: 0 | 1;
  /** Mean expected (noise-free) reward of the greedy serving policy, the oracle, uniform and best static. */
  readonly learned: number;
  readonly oracle: number;
  readonly uniform: number;
  readonly bestStatic: number;
  /** Mean expected reward of the served (exploring) decisions since the previous checkpoint. */
  readonly served: number;
  /** Serving model version (0: the safe start serves the default strategy). */
  readonly version: number;
}

export interface Evaluation {
  readonly contexts: readonly unknown[];
  readonly oracle: number[];
  readonly uniform: number[];
  readonly bestStatic: number[];
  readonly staticShares: number[];
}

export function asSimWorld(world: World | SimWorld): SimWorld {
  return 'truth' in world ? (namedWorld(world) as SimWorld) : world;
}

/** Evaluation of a hand-written world (kept for the CLI): oracle, uniform and best static per context. */
export function prepareEvaluation(world: World, phase: 0 | 1, contexts: readonly SimContext[], total = world.totalTokens): Evaluation & { readonly contexts: readonly SimContext[] } {
  const staticShares = bestStaticShares(world, phase, contexts.slice(0, 400), total);
  return {
    contexts,
    oracle: contexts.map((x) => expectedQuality(world, phase, x, oracleBudgets(world, phase, x, total))),
    uniform: contexts.map((x) => expectedQuality(world, phase, x, uniformBudgets(world, total))),
    bestStatic: contexts.map((x) => expectedQuality(world, phase, x, staticBudgets(world, staticShares, total))),
    staticShares,
  };
}

/** The same for any SimWorld. */
export function evaluateWorld(world: SimWorld, phase: 0 | 1, contexts: readonly unknown[], total = world.totalTokens): Evaluation {
  const staticShares = bestStatic(world, phase, contexts.slice(0, 300), total);
  const uni = uniformSplitOf(world, total);
  const st = staticSplit(world, staticShares, total);
  return {
    contexts,
    oracle: contexts.map((x) => world.expected(phase, x, world.oracle(phase, x, total))),
    uniform: contexts.map((x) => world.expected(phase, x, uni)),
    bestStatic: contexts.map((x) => world.expected(phase, x, st)),
    staticShares,
  };
}

export function policyAgents(world: Pick<SimWorld, 'agents'>) {
  return world.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens }));
}

/** Expected quality of the greedy learned split per evaluation context of a hand-written world, at `total`. */
export function learnedValues(world: World, phase: 0 | 1, weights: ModelWeights, encoder: FeatureEncoder, contexts: readonly SimContext[], total = world.totalTokens): number[] {
  const agents = policyAgents(world);
  return contexts.map((x) => expectedQuality(world, phase, x, greedyBudgets(forward(weights, encoder.encode(contextFeatures(x))), agents, total)));
}

/** The same for any SimWorld (a missing model: the default strategy, uniform). */
export function greedyValues(world: SimWorld, phase: 0 | 1, model: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder } | undefined, contexts: readonly unknown[], total = world.totalTokens): number[] {
  const agents = policyAgents(world);
  const uni = uniformSplitOf(world, total);
  return contexts.map((x) => world.expected(phase, x, model ? greedyBudgets(forward(model.weights, model.encoder.encode(world.features(x))), agents, total) : uni));
}

/**
 * The learned arm against the default strategy, per window of `size` consecutive outcomes of a run (benches: the
 * worse-than-default stretches): whether a trained version served at the window's end, and the sum over the window's
 * learned-arm outcomes (the control arm's left out) of the served split's expected reward less the default split's, with
 * their count.
 */
export function armWindows(world: SimWorld, res: Pick<LoopResult, 'served' | 'contexts' | 'controlServed' | 'servingVersion'>, dflt: readonly number[], size = 250): { readonly start: number; readonly trained: boolean; readonly dv: number; readonly n: number }[] {
  const out: { start: number; trained: boolean; dv: number; n: number }[] = [];
  for (let s = 0; s + size <= res.served.length; s += size) {
    const ph = phaseOf(world, s);
    let dv = 0;
    let n = 0;
    for (let i = s; i < s + size; i++) {
      if (res.controlServed[i] === 1) continue;
      dv += res.served[i]! - world.expected(ph, res.contexts[i], dflt);
      n++;
    }
    out.push({ start: s, trained: res.servingVersion[s + size - 1]! > 0, dv, n });
  }
  return out;
}

/**
 * Expected reward of the exploring policy (Σ_k p_k · value of candidate k, exactly) per context at `total`: what
 * users get, exploration included. A missing model: the safe start around the default strategy.
 */
export function servedValues(
  world: SimWorld,
  phase: 0 | 1,
  model: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder; readonly version?: number } | undefined,
  explore: ExploreOptions,
  contexts: readonly unknown[],
  total = world.totalTokens,
  controlShare: number = GUARD_DEFAULTS.controlShare,
): number[] {
  const agents = policyAgents(world);
  const uni = uniformSplitOf(world, total);
  const rng = mulberry32(1);
  return contexts.map((x) => {
    let dec = model ? decide(forward(model.weights, model.encoder.encode(world.features(x))), agents, total, optionsFor(explore, model.version ?? 0), rng, uni) : decideAround(uni, agents, total, explore, rng, uni);
    if (controlShare > 0) dec = withCandidate(dec, uni, controlShare, rng);
    let v = 0;
    dec.candidates.forEach((c, k) => (v += dec.probs[k]! * world.expected(phase, x, c)));
    return v;
  });
}

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;

/** A trained model version in the loop. */
export interface LoopVersion {
  readonly version: number;
  readonly at: number;
  readonly weights: ModelWeights;
  readonly encoder: FeatureEncoder;
  readonly gate?: GateVerdict;
  readonly active: boolean;
  readonly metrics?: TrainMetrics;
  /** The training window and recency half-life this version was trained with (drift recovery shortens the half-life after a change). */
  readonly window?: number;
  readonly halfLife?: number;
  /** The share of decisions its split gets while it is the candidate (policy.ts candidateShareFor). */
  readonly share?: number;
  /** What drift recovery's forgetting weighed down in its training data (drift.ts forgetSpan), when it did. */
  readonly forget?: ForgetSpan;
}

export interface LoopResult {
  readonly checkpoints: Checkpoint[];
  /** The serving model at the end (undefined: still on the safe start). */
  readonly serving: LoopVersion | undefined;
  /** Kept for older callers: the serving weights and encoder (the newest trained version when none serves). */
  readonly weights: ModelWeights;
  readonly encoder: FeatureEncoder;
  readonly events: LoggedEvent[];
  readonly evaluations: readonly [Evaluation | undefined, Evaluation | undefined];
  readonly trainMs: number[];
  readonly versions: readonly LoopVersion[];
  /** Per outcome: the request's context and the expected reward of what was served. */
  readonly contexts: readonly unknown[];
  readonly served: Float64Array;
  /** Per outcome: the serving version (0 = safe start). */
  readonly servingVersion: Int32Array;
  /** Per outcome: 1 when the guard's control arm served it. */
  readonly controlServed: Uint8Array;
  /** Outcomes at which drift recovery placed a detected change, and at which it retired the serving version. */
  readonly changes: readonly number[];
  readonly retired: readonly number[];
  /** Outcomes (retrains) at which a change was detected, one per entry of `changes`. */
  readonly detected: readonly number[];
  /** Candidate versions the runtime guard refused (guardCandidate). */
  readonly guardRefused: readonly number[];
  /** Gate refusals that showed harm and counted in the backoff (candidateBackoffGate): outcome, version, k in a row, next candidate at. */
  readonly gateBackoffs: readonly { readonly at: number; readonly version: number; readonly k: number; readonly until: number }[];
  /** Where the guard shrank the safe start's exploration (guardSafeStart): outcome, the factor it set (by control: the scale; by cost: the exploration rate's), and the test's difference (learned − control; the exploration's cost). */
  readonly safeStartShrinks: readonly { readonly at: number; readonly scale: number; readonly diff: number; readonly by: 'control' | 'cost' }[];
  /** The serving-version guard's reverts (`guard`): at which outcome, from which version to which (0: the safe start), and learned − control. */
  readonly guardReverts: readonly { readonly at: number; readonly from: number; readonly to: number; readonly diff: number }[];
  /** Per outcome: 1 when a wide safe-start split (ExploreOptions.wideStart) served it. */
  readonly wideServed: Uint8Array;
}

export async function runLoop(tf: Tf, opts: LoopOptions, onCheckpoint?: (c: Checkpoint) => void): Promise<LoopResult> {
  const world = asSimWorld(opts.world);
  const rng = mulberry32(opts.seed);
  const evalRng = mulberry32(opts.seed ^ 0x9e3779b9);
  const specs = world.declaration.features;
  const autoScale = opts.autoScale ?? true;
  const gateRule = opts.gate === undefined ? DEFAULT_GATE : opts.gate;
  const safeStart = opts.safeStart ?? true;
  const costModel = opts.costModel ?? 'off';
  const controlShare = opts.controlShare ?? GUARD_DEFAULTS.controlShare;
  const agents = policyAgents(world);
  const names = world.agents.map((a) => a.name);
  const uniform = uniformSplitOf(world, world.totalTokens);
  const nEval = opts.evalContexts ?? 1000;
  const contexts = Array.from({ length: nEval }, () => world.sample(evalRng));
  const evaluations: [Evaluation | undefined, Evaluation | undefined] = nEval > 0 ? [evaluateWorld(world, 0, contexts), world.driftAt !== undefined ? evaluateWorld(world, 1, contexts) : undefined] : [undefined, undefined];
  let encoder = compileFeatures(specs);
  const prior: LoopVersion = { version: 0, at: 0, weights: initialWeights(encoder.dim, names.length, world.totalTokens, mulberry32(opts.seed + 1), opts.hidden, opts.globalHead, opts.weightPrior), encoder, active: !safeStart };
  let serving: LoopVersion | undefined = safeStart ? undefined : prior;
  const drift = opts.driftRecovery === undefined ? DEFAULT_DRIFT : opts.driftRecovery;
  const changes: number[] = [];
  const retired: number[] = [];
  const detected: number[] = [];
  // Forgetting (DriftRule.forgetAfter): the version the latest detection was made on, whether the second check
  // (forgetConfirm) agreed (undefined: not made yet), and where the first trained version cleared the gate.
  let detectedOn: LoopVersion | undefined;
  let confirmed: boolean | undefined;
  let firstServedAt: number | undefined;
  let look = 0;
  let latest = prior;
  // The trained versions drift recovery may check (not those trained on 1 − quality), oldest first.
  const trained: LoopVersion[] = [];
  let candidate: LoopVersion | undefined;
  // The guard's candidate arm: the evidence since `candidate` was proposed, and the versions it refused.
  let candEv = { version: 0, e: EMPTY_CANDIDATE_EVIDENCE };
  const guardRefused: number[] = [];
  // Consecutive refused candidates (candidateShareAfterRefusals).
  let refusals = 0;
  // The guard's backoff after candidates it refused in a row (guard.ts candidateAfter): how many, and until when.
  let guardInRow = 0;
  let candidateAfterT = 0;
  // The gate's refusals that showed harm (guard.ts gateShowsHarm) and counted in that backoff.
  const gateBackoffs: { at: number; version: number; k: number; until: number }[] = [];
  // The safe start's exploration scale and its evidence (guard.ts safeStartVerdict), and every shrink.
  let safeScale = 1;
  // The exploration rate's own factor, which the cost test halves (guard.ts SafeStartState `exploration`).
  let safeExplore = 1;
  let safeShrinks = 0;
  let safeEv: SafeStartEvidence = EMPTY_SAFE_START;
  const safeStartShrinks: { at: number; scale: number; diff: number; by: 'control' | 'cost' }[] = [];
  const safeMargin = opts.safeStartMargin === undefined ? SAFE_START_MARGIN_DEFAULT : opts.safeStartMargin;
  const resetSafeStart = () => {
    safeScale = 1;
    safeExplore = 1;
    safeShrinks = 0;
    safeEv = EMPTY_SAFE_START;
  };
  // The serving-version guard (the service's guard-monitor check and registry.revert): its running tests since the
  // segment began (the start, or the last revert or retirement), whether the segment began with a step back, the
  // outcome until which activations are held, and the versions that served and were reverted.
  const guardOn = opts.guard !== false && controlShare > 0;
  let share = controlShare;
  let guardRun: GuardRun = NEW_RUN;
  let steppedBack = false;
  let holdUntil = -1;
  const activatedAt = new Map<number, number>();
  const reverted = new Set<number>();
  const guardReverts: { at: number; from: number; to: number; diff: number }[] = [];
  const greedyOf = (m: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder }, f: LoggedEvent['f'], total: number) =>
    greedyBudgets(forward(m.weights, m.encoder.encode(f)), agents, total);
  const versions: LoopVersion[] = [];
  const events: LoggedEvent[] = [];
  const checkpoints: Checkpoint[] = [];
  const trainMs: number[] = [];
  const every = opts.trainEvery ?? DEFAULT_TRAIN_EVERY;
  const cpEvery = opts.checkpointEvery ?? 1000;
  const servedAll = new Float64Array(opts.outcomes);
  const servingVersion = new Int32Array(opts.outcomes);
  const controlServed = new Uint8Array(opts.outcomes);
  const wideServed = new Uint8Array(opts.outcomes);
  // The safe start's own candidates: a wide split is one the safe start drew beyond them.
  const safeK = candidatesAround(uniform, agents, world.totalTokens, signedPerturbation(opts.explore), uniform).length;
  const seen: unknown[] = [];
  let servedSum = 0;
  let servedN = 0;
  const checkpoint = (t: number) => {
    const phase = phaseOf(world, t);
    const ev = evaluations[phase];
    const c: Checkpoint = {
      outcomes: t,
      phase,
      learned: ev ? mean(greedyValues(world, phase, serving, contexts)) : NaN,
      oracle: ev ? mean(ev.oracle) : NaN,
      uniform: ev ? mean(ev.uniform) : NaN,
      bestStatic: ev ? mean(ev.bestStatic) : NaN,
      served: servedN ? servedSum / servedN : NaN,
      version: serving?.version ?? 0,
    };
    servedSum = 0;
    servedN = 0;
    checkpoints.push(c);
    onCheckpoint?.(c);
  };
  checkpoint(0);
  for (let t = 0; t < opts.outcomes; t++) {
    const phase = phaseOf(world, t);
    const x = world.sample(rng);
    seen.push(x);
    const f = world.features(x);
    const heads = serving ? forward(serving.weights, serving.encoder.encode(f)) : undefined;
    let dec = heads
      ? decide(heads, agents, world.totalTokens, optionsFor(opts.explore, serving!.version), rng, uniform)
      : decideAround(uniform, agents, world.totalTokens, opts.wideUntil !== undefined && t >= opts.wideUntil ? { ...opts.explore, wideStart: 0 } : opts.explore, rng, uniform, SAFE_START_EPSILON * safeScale * safeExplore);
    const wide = !serving && dec.chosen >= safeK;
    let drawn = false;
    if (candidate) {
      const mixed = withCandidate(dec, greedyOf(candidate, f, world.totalTokens), safeStartCandidateShare(candidate.share ?? opts.candidateShare ?? CANDIDATE_SHARE, serving ? 1 : safeScale), rng);
      drawn = mixed.drawn;
      dec = mixed;
    }
    // The guard's control arm: the default strategy serves this share, logged as part of the mixture.
    // While a trained version serves, at the share the guard's last tick set (adaptiveControlShare); else at controlShare.
    const sh = serving && serving.version > 0 ? share : controlShare;
    if (sh > 0) {
      const u = rng();
      dec = withCandidate(dec, uniform, sh, () => u);
      controlServed[t] = u < sh ? 1 : 0;
    }
    if (wide && !drawn && !controlServed[t]) wideServed[t] = 1;
    const out = world.outcome(phase, x, dec.budgets, rng);
    // The guard's offset, as the decision logs it (ControlMeta `z`): both of the guard's tests take it.
    const z = heads && opts.guardOffset !== false ? (guardOffset(predict(heads, uniform)) ?? 0) : 0;
    if (candidate && controlShare > 0 && opts.guardCandidate !== false) {
      if (candEv.version !== candidate.version) candEv = { version: candidate.version, e: EMPTY_CANDIDATE_EVIDENCE };
      candEv = { version: candidate.version, e: addCandidateEvidence(candEv.e, controlServed[t] ? 'control' : drawn ? 'candidate' : 'serving', out.quality - world.costWeight * (out.cost ?? 0), z) };
      if ((t + 1) % 25 === 0 && candidateVerdict(candEv.e).status === 'worse') {
        guardRefused.push(candidate.version);
        candidate = undefined;
        refusals++;
        if (opts.candidateBackoff !== false) {
          guardInRow++;
          candidateAfterT = candidateAfter(t + 1, guardInRow, every);
          // A refused candidate is no warm start: the serving version, else the newest trained one the guard did not refuse.
          latest = serving ?? [...trained].reverse().find((v) => !guardRefused.includes(v.version)) ?? prior;
        }
      }
    }
    // The safe start's learned traffic against the control arm (the service's guard-monitor checkSafeStart).
    if (!serving && controlShare > 0 && opts.guardSafeStart !== false) {
      const r = out.quality - world.costWeight * (out.cost ?? 0);
      // The cost test leaves out the candidate's plays (its own arm judges them) and explore-first's stretch (its
      // random splits are the cost its owner chose).
      const exploringFirst = (opts.explore.wideStart ?? 0) > 0 && (opts.wideUntil === undefined || t < opts.wideUntil);
      const atDefault = dec.budgets.every((b, i) => b === uniform[i]);
      safeEv = addSafeStartReward(safeEv, r, controlServed[t] === 1, atDefault, !exploringFirst && !(drawn && !controlServed[t]));
      if ((t + 1) % 25 === 0) {
        const { check: v, next } = safeStartStep(safeEv, safeShrinks, { scale: safeScale, exploration: safeExplore }, safeMargin, {}, SAFE_START_MIN_SCALE);
        if (next) {
          safeScale = next.scale;
          safeExplore = next.exploration;
          safeShrinks++;
          safeEv = EMPTY_SAFE_START;
          safeStartShrinks.push({ at: t + 1, scale: v.by === 'control' ? safeScale : safeExplore, diff: v.by === 'cost' ? v.cost!.cost! : v.control.diff!, by: v.by! });
        }
      }
    }
    // The serving-version guard: every decision of a trained version, by arm, its reward less the logged offset.
    if (guardOn && serving && serving.version > 0) {
      guardRun = accumulate(guardRun, serving.version, controlServed[t] ? 1 : 0, out.quality - world.costWeight * (out.cost ?? 0), GUARD_DEFAULTS.segmentOutcomes, z);
      if ((t + 1) % 25 === 0) {
        const verdict = judge(guardRun);
        // The guard-monitor's tick sets the share the next decisions log (registry.setControlShare).
        share = verdict.status === 'worse' ? controlShare : adaptiveControlShare(controlShare, guardRun.total, { min: opts.controlShareMin, margin: opts.controlShareMargin, max: opts.probationShare, probation: opts.probationMargin });
        if (verdict.status === 'worse') {
          const from = serving.version;
          const listed = versions.filter((x) => x !== undefined).map((x) => ({ version: x.version, ...(activatedAt.has(x.version) ? { activatedAt: activatedAt.get(x.version)! } : {}), ...(reverted.has(x.version) ? { reverted: true } : {}) }));
          const to = revertTarget(listed, from, guardRun.total, steppedBack);
          reverted.add(from);
          guardReverts.push({ at: t + 1, from, to, diff: verdict.diff! });
          serving = to > 0 ? versions[to - 1] : undefined;
          if (serving) activatedAt.set(to, t + 1);
          steppedBack = to > 0;
          holdUntil = t + 1 + (opts.guardHold ?? GUARD_DEFAULTS.holdOutcomes);
          guardRun = NEW_RUN;
          share = controlShare;
          resetSafeStart();
        }
      }
    }
    const v = world.expected(phase, x, dec.budgets);
    servedAll[t] = v;
    servingVersion[t] = serving?.version ?? 0;
    servedSum += v;
    servedN++;
    const b: Record<string, number> = {};
    names.forEach((a, i) => (b[a] = dec.budgets[i]!));
    const used = out.usage;
    const u: Record<string, number> | undefined = used ? {} : undefined;
    if (used) names.forEach((a, i) => (u![a] = used[i]!));
    events.push({ id: `${opts.seed}-${t}`, t, s: 'learned', f, T: world.totalTokens, b, q: out.quality, c: out.cost, ...(u ? { u } : {}), C: dec.candidates, P: dec.probs, k: dec.chosen, m: serving?.version ?? 0 });
    if ((t + 1) % every === 0) {
      // Drift recovery (drift.ts): the newest version on the decisions since it was trained; a change shortens the
      // training window below and ends a candidate's wait for more looks (it was trained before the change).
      // The newest trained version, and the newest with `span` decisions since it was trained when retrains come sooner (checkedVersions).
      let changed = false;
      if (drift) {
        const recent = trained.slice(-8).reverse();
        for (const i of checkedVersions(recent.map((v) => t + 1 - v.at), drift)) {
          const v = recent[i]!;
          if (v.metrics && residualCheck(events.slice(v.at), { ...v, holdoutMse: v.metrics.holdoutMse, rows: v.metrics.rows }, names, world.costWeight, drift).changed) {
            changed = true;
            changes.push(v.at);
            detected.push(t + 1);
            detectedOn = v;
            confirmed = undefined;
            break;
          }
        }
      }
      // After a change: a serving version estimated worse than the default on the decisions since stops serving (gate.ts retireVerdict).
      const changeAt = changes.at(-1);
      if (drift && gateRule && serving && changeAt !== undefined && t + 1 - changeAt < (opts.window ?? 8000) && t + 1 - changeAt >= gateRule.minEvents) {
        const sv = serving;
        const r = retireVerdict({ events: events.slice(Math.max(changeAt, sv.at)), agents: names, costWeight: world.costWeight, candidate: sv, candidateSplit: (e) => greedyOf(sv, e.f, e.T), defaultSplit: () => uniform }, gateRule);
        if (r.retire) {
          retired.push(t + 1);
          // As the service's registry.revert (to 0, no hold): a new segment of the guard's evidence.
          reverted.add(sv.version);
          serving = undefined;
          resetSafeStart();
          steppedBack = false;
          guardRun = NEW_RUN;
          share = controlShare;
        }
      }
      if (candidate && gateRule) {
        const c = candidate;
        const s = serving;
        look++;
        const input: GateInput = {
          events: events.slice(c.at),
          agents: names,
          costWeight: world.costWeight,
          candidate: c,
          candidateSplit: (e) => greedyOf(c, e.f, e.T),
          // The serving version's own held-out decisions (since it was trained, or the last change) for the gate's lineage estimate.
          ...(s ? { serving: { version: s.version, split: (e: LoggedEvent) => greedyOf(s, e.f, e.T), evidence: { events: events.slice(Math.max(s.at, changes.at(-1) ?? 0)), model: s } } } : {}),
          defaultSplit: () => uniform,
          ...(opts.gateTolerance !== undefined ? { tolerance: opts.gateTolerance } : {}),
        };
        // A bench may replace the verdict (e.g. a gate that knows the world's truth: what a perfect rule could do).
        const ruled = gateVerdict(input, gateRule, look);
        // Fewer decisions than the gate needs (a retrain cadence under its minimum): no verdict, no look used, and
        // nothing trained over the candidate, as the service's gateCandidate answers "awaits the gate".
        if (ruled.events < gateRule.minEvents) {
          look--;
          if ((t + 1) % cpEvery === 0) checkpoint(t + 1);
          continue;
        }
        const judgedBy = opts.onJudge?.({ t: t + 1, phase, look, candidate: c, serving: s, input, verdict: ruled }) ?? ruled;
        const held = !s && t + 1 < (opts.startHold ?? 0) && judgedBy.pass;
        // The guard holds activations after a revert (registry.activate lists the version, held, and does not serve it).
        const guardHeld = !held && t + 1 < holdUntil && judgedBy.pass;
        const gate: GateVerdict = held
          ? { ...judgedBy, pass: false, wait: false, reason: `the safe start holds until outcome ${opts.startHold}` }
          : guardHeld
            ? { ...judgedBy, pass: false, wait: false, reason: `held: the runtime guard holds activations until outcome ${holdUntil}` }
            : judgedBy;
        const judged: LoopVersion = { ...c, gate, active: gate.pass };
        versions[c.version - 1] = judged;
        if (gate.pass) {
          serving = judged;
          activatedAt.set(judged.version, t + 1);
        }
        if (gate.pass && firstServedAt === undefined) firstServedAt = t + 1;
        if (gate.pass) {
          refusals = 0;
          guardInRow = 0;
          candidateAfterT = 0;
          resetSafeStart();
        } else if (!(gate.wait && !changed)) {
          refusals++;
          // A refusal that shows harm counts in the backoff like the guard's (the service's gateCandidate), unless a change
          // was detected at this retrain (the candidate predates it; the next fit is drift recovery's).
          if (!changed && opts.candidateBackoff !== false && gateBackoffApplies(opts.candidateBackoffGate ?? CANDIDATE_BACKOFF_GATE_DEFAULT, s?.version ?? 0) && gateShowsHarm(gate, gateRule.delta)) {
            guardInRow++;
            candidateAfterT = candidateAfter(t + 1, guardInRow, every);
            gateBackoffs.push({ at: t + 1, version: c.version, k: guardInRow, until: candidateAfterT });
          }
        }
        // Inconclusive with looks left: it stays the candidate and nothing is trained over it (as the service does).
        if (gate.wait && !changed) {
          if ((t + 1) % cpEvery === 0) checkpoint(t + 1);
          continue;
        }
        candidate = undefined;
        look = 0;
      }
      // The guard's backoff: no new candidate before candidateAfterT.
      if (!candidate && t + 1 < candidateAfterT) {
        if ((t + 1) % cpEvery === 0) checkpoint(t + 1);
        continue;
      }
      const since = changes.length > 0 ? t + 1 - changes.at(-1)! : Infinity;
      const win = drift ? windowAfterChange(since, opts.window ?? 8000, opts.halfLife ?? 1000, drift) : { window: opts.window ?? 8000, halfLife: opts.halfLife ?? 1000, shortened: false };
      const recent = events.slice(-win.window).reverse();
      const scaling = autoScale ? fitScaling(specs, recent.map((e) => e.f), opts.scalingMethod) : undefined;
      encoder = compileFeatures(specs, scaling);
      // After a detected change, while no version serves (the serving one was retired or reverted): the untrained prior
      // is the warm start, not the newest fit, which learned the world before the change (coldAfterChange).
      const cold = (opts.coldAfterChange ?? COLD_AFTER_CHANGE_DEFAULT) && !serving && changes.length > 0 && t + 1 - changes.at(-1)! < (opts.window ?? 8000);
      const from = cold ? prior : latest;
      const init = rescaleInputs(from.weights, from.encoder.numeric, encoder.numeric);
      const costOpts = { costWeight: world.costWeight, ...(costModel === 'declared' && world.prices ? { prices: world.prices } : {}) };
      const usesCost = costModel !== 'off' && canFitCost(recent, names, costOpts);
      // After a detection: events from before it forgotten (forgetSpan).
      const hl = opts.halfLife !== undefined || win.shortened ? { halfLife: win.halfLife } : {};
      const det = detected.at(-1);
      if (drift && drift.forgetConfirm && det !== undefined && confirmed === undefined && forgetWeight(t + 1 - det, drift) < 1 && detectedOn?.metrics) {
        confirmed = residualCheck(events.slice(det), { ...detectedOn, holdoutMse: detectedOn.metrics.holdoutMse, rows: detectedOn.metrics.rows }, names, world.costWeight, drift).changed;
      }
      const forget = drift ? forgetSpan({ detectedAt: det, since: det === undefined ? 0 : t + 1 - det, firstServedAt: gateRule ? firstServedAt : 0, confirmed: confirmed === true, retired: det !== undefined && retired.some((r) => r >= changes.at(-1)!) }, drift) : undefined;
      const flip = opts.flipReward?.(versions.length + 1) ?? false;
      const data = buildTrainingData(flip ? recent.map((e) => ({ ...e, q: 1 - e.q })) : recent, encoder, names, { costWeight: usesCost ? 0 : world.costWeight, ...hl, ...(opts.importance ? { importance: opts.importance } : {}), ...(forget ? { forget } : {}), ...(opts.holdout ? { holdout: opts.holdout } : {}) });
      const keep = opts.wideKeep;
      if (keep !== undefined) recent.forEach((e, i) => {
        if (wideServed[e.t]) data.w[i] = Math.max(data.w[i]!, keep);
      });
      const res = await trainModel(tf, data, init, { seed: opts.seed + t, yieldToEventLoop: false, ...opts.train });
      const cost = usesCost ? fitCost(recent, encoder, names, res.weights, { ...costOpts, ...hl }) : undefined;
      trainMs.push(res.metrics.ms);
      const mv: LoopVersion = { version: versions.length + 1, at: t + 1, weights: cost ? { ...res.weights, cost } : res.weights, encoder, active: !gateRule, metrics: res.metrics, window: win.window, halfLife: win.halfLife, ...(forget ? { forget } : {}), share: opts.candidateShareAfterRefusals && refusals >= opts.candidateShareAfterRefusals.after ? opts.candidateShareAfterRefusals.share : candidateShareFor(win.shortened, opts.candidateShareAfterChange === undefined ? DRIFT_CANDIDATE_SHARE : (opts.candidateShareAfterChange ?? undefined), opts.candidateShare ?? CANDIDATE_SHARE) };
      versions.push(mv);
      if (!flip) {
        latest = mv;
        trained.push(mv);
      }
      if (gateRule) candidate = mv;
      else serving = mv;
    }
    if ((t + 1) % cpEvery === 0) checkpoint(t + 1);
  }
  const final = serving ?? latest;
  return { checkpoints, serving, weights: final.weights, encoder: final.encoder, events, evaluations, trainMs, versions, contexts: seen, served: servedAll, servingVersion, controlServed, changes, retired, detected, guardRefused, gateBackoffs, guardReverts, wideServed, safeStartShrinks };
}
