import {
  BUILTIN_ENGINE_KINDS,
  compileLearned,
  decide,
  defaultSplitOf,
  defaultTierAction,
  servingModel,
  tierAgentsOf,
  tierNeedGuess,
  viewOf,
  type CompiledStrategy,
  type ControlKind,
  type ControlView,
  type KindLookup,
  type LearnedServingParams,
  type Pipeline,
  type RawControlState,
  type Versioned,
} from '@apportion/sdk/engine';
import { DEFAULT_DRIFT, keysGreedy, residualTest, windowAfterChange, type DriftRule, type StratumError } from '../drift.js';
import { rewardOf, type LoggedEvent } from '../events.js';
import { compileFeatures, type FeatureScaling } from '../features.js';
import { gateRuleFor, gateVerdict, retireVerdict, type GateRule } from '../gate.js';
import { accumulate, adaptiveControlShare, GUARD_DEFAULTS, probationShareOf, judge, NEW_RUN, revertTarget, type GuardRun } from '../guard.js';
import { controlShareOf } from '../control-arm.js';
import { loggingPolicyOf } from '../hooks.js';
import { TIER_TRAIN_EVERY, type LearnedParams } from '../kind.js';
import { initialWeights, serializeWeights } from '../model.js';
import { mulberry32 } from '../rng.js';
import { tierGateInput, tierResidual, tierStratum } from '../tier-gate.js';
import type { SerializedTierParams, TierAction, TierRidge } from '../tiers-policy.js';
import { trainTiers } from '../train-tiers.js';
import { worldFeatures, type SimContext } from './world.js';
import type { TierWorld } from './tiers.js';

/**
 * The service's learning loop for a pipeline with model tiers, run in process on a tier world (no Redis, no HTTP):
 * every decision is the engine's (`decide`: the learned strategy compiled as the server and the SDK compile it, its
 * joint decision, the tier stage), logged as the outcome worker logs it (`loggingPolicyOf` on the decision record's
 * fields), trained by the training job's tier retrain (`trainTiers`) every `trainEvery` outcomes, and activated by
 * the activation gate (`gateVerdict` on `tierGateInput`, the decisions since the candidate was proposed) exactly as
 * TrainingService.train does: a pending candidate is judged first (too few decisions: it keeps waiting and nothing is
 * trained over it), then a new version is trained and becomes the candidate. The models document is rebuilt as the
 * registry writes it. The runtime guard runs as the guard monitor does (guard-monitor.ts, with guard.ts's pure tests):
 * the realised rewards of the learned and control arms of the decisions of trained versions since the guard's
 * segment began, judged every `guardEvery` outcomes (the learner tick); a `worse` verdict reverts as the registry does
 * (revertTarget: one step back to an earlier version, else the control strategy, which then serves every decision)
 * and holds automatic activations for `guardHoldOutcomes`. Drift recovery runs at every retrain as
 * TrainingService.train runs it (drift.ts residualTest on tier-gate.ts tierResidual for the newest trained version;
 * after a change, gate.ts retireVerdict on the serving version against the default strategy's action, and the
 * shortened recency half-life of windowAfterChange in the retrains). Not simulated: default rewards (every decision
 * gets its outcome), the gate's repeated looks at one candidate (each candidate is judged once it has the gate's
 * minimum of decisions).
 */
export interface TierLoopOptions {
  readonly world: TierWorld;
  readonly outcomes: number;
  readonly seed: number;
  /** The request's cost ceiling (default the world's) and token total (default the world's). */
  readonly maxCostUsd?: number;
  readonly totalTokens?: number;
  /** Only these models (indices into the world's models) are declared per agent: [0] is token-only on the first model. */
  readonly models?: readonly number[];
  /** The learned strategy's parameters (defaults: the service's). */
  readonly params?: LearnedParams;
  /** The runtime guard's reverts (default on, as the service); false: its control arm serves its share but never reverts. */
  readonly guard?: boolean;
  /** Outcomes between two guard checks (the learner tick: 250 = 50 requests/s × 5 s). Default 250. */
  readonly guardEvery?: number;
  /** Drift recovery (default the service's DEFAULT_DRIFT); null: off. */
  readonly driftRecovery?: DriftRule | null;
  /** A tier version serving from the first decision (activated, as if trained before), e.g. for a degradation run. */
  readonly initial?: TierLoopVersion;
  /** Retrain (default true); false: the serving version stays frozen (no candidate, no drift check). */
  readonly retrain?: boolean;
  /** From this outcome on, the world is `degraded` (outcomes and the quality reported). */
  readonly degradeAt?: number;
  readonly degraded?: TierWorld;
  /** How the tier retrain's fit regularises (tiers-policy.ts TierRidge); default the service's (TIER_RIDGE: `decoupled`). */
  readonly ridge?: TierRidge;
  /** The tier fit's regularisation strength (TierJobInput.decay); default the service's (TIER_DECAY for `decoupled`). */
  readonly decay?: number;
  /** How the tier retrain holds out its tenth (TierJobInput.holdout); default the service's (`id`). Benches only. */
  readonly holdout?: 'id' | 'draw';
  /** The activation gate's rule changed from the service's (gate.ts gateRuleFor) in these fields; benches only. */
  readonly gate?: Partial<GateRule>;
  /**
   * Diagnostic (benches only): decides a candidate's activation instead of the gate's verdict (true: it serves), when
   * the gate would judge it (its minimum of decisions logged); the serving tier version, if any, and the default
   * strategy's action for a request (its features as logged, token total and ceiling) are passed beside it.
   */
  readonly gateOverride?: (candidate: TierLoopVersion, serving: TierLoopVersion | undefined, defaultAction: (f: LoggedEvent['f'], total: number, ceiling: number) => TierAction) => boolean;
}

/** A trained tier version: its parameters, feature scaling, held-out error and rows (what drift recovery checks it with). */
export interface TierLoopVersion {
  /** Its version number (the exploration rate decays with it). Default 1. */
  readonly version?: number;
  readonly tiers: SerializedTierParams;
  readonly scaling?: FeatureScaling;
  readonly holdoutMse: number;
  readonly rows: number;
  /** Held-out errors per served model assignment (the tier retrain's metrics): drift recovery's stratified test. */
  readonly holdoutStrata?: Readonly<Record<string, StratumError>>;
}

/** A version taken out of service: by the guard (to an earlier version or the control, 0) or by drift recovery (to 0). */
export interface TierLoopRevert {
  readonly at: number;
  readonly reason: 'guard' | 'drift';
  readonly from: number;
  readonly to: number;
  readonly diff: number;
}

export interface TierLoopResult {
  /** Per decision: the request, the served action's expected (noise-free) quality and planned cost, the model indices served. */
  readonly contexts: SimContext[];
  readonly quality: Float64Array;
  readonly cost: Float64Array;
  readonly assign: number[][];
  /** Serving version after each decision (0: the safe start). */
  readonly version: Int32Array;
  readonly gates: { at: number; version: number; status: string; reason: string }[];
  trained: number;
  /** The guard's reverts and drift recovery's retirements, in order. */
  readonly reverts: TierLoopRevert[];
  /** Detected changes: the retrain (outcomes) that detected it and where it was placed (the version's training). */
  readonly changes: { readonly at: number; readonly changeAt: number; readonly version: number; readonly mse: number; readonly holdoutMse: number; readonly n: number }[];
  /** Every drift check run (a change or not): the retrain, the version checked, the test's statistic and decisions compared. */
  readonly checks: { readonly at: number; readonly version: number; readonly z: number; readonly n: number }[];
  /** Per decision: 1 when the control strategy served it (the guard's control arm, or all decisions while reverted to it). */
  readonly control: Uint8Array;
  /** Per decision: the served budgets (agent order). */
  readonly budgets: number[][];
  /** The version serving at the end, else the newest trained one (undefined: none was trained). */
  final?: TierLoopVersion;
  /** The logged events at the end (newest first, at most the window), as the training buffer holds them. */
  events: readonly LoggedEvent[];
  /** Every trained version in order: when it was trained (outcomes) and whether it was activated. */
  trainedVersions: (TierLoopVersion & { readonly at: number; readonly activated: boolean })[];
}

const PIPELINE = 'tiers-loop';

export function runTierLoop(o: TierLoopOptions): TierLoopResult {
  const tw = o.world;
  const keep = o.models ?? tw.models.map((_, k) => k);
  const prices = tw.pipeline.agents[0]!.models!.map((m) => m.price);
  const pipelineDoc = {
    defaultTotalTokens: tw.totalTokens,
    defaultStrategy: 'learn',
    agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens, models: keep.map((k) => ({ model: tw.models[k]!, price: prices[k]! })) })),
  };
  const params: LearnedParams = o.params ?? {};
  const decl = worldFeatures(tw.world);
  const ver = <T>(id: string, doc: T, version = 1): Versioned<unknown> => ({ id, version, doc });
  let modelsDoc: Record<string, unknown> | undefined;
  let stateVersion = 1;
  const raw = (): RawControlState => {
    const kinds = {
      pipelines: new Map([[PIPELINE, ver(PIPELINE, pipelineDoc)]]),
      strategies: new Map([['learn', ver('learn', { pipeline: PIPELINE, kind: 'learned', params })]]),
      experiments: new Map(),
      priceOverrides: new Map(),
      features: new Map([[PIPELINE, ver(PIPELINE, decl)]]),
      models: new Map(modelsDoc ? [[PIPELINE, ver(PIPELINE, modelsDoc, stateVersion)]] : []),
    } as unknown as Record<ControlKind, ReadonlyMap<string, Versioned<unknown>>>;
    return { version: stateVersion, kinds };
  };
  let view: ControlView = viewOf(raw());
  const refresh = () => {
    stateVersion++;
    view = viewOf(raw());
  };
  // The kinds as the SDK's local mode builds them (the server's learned kind compiles the same engine code).
  let kinds!: KindLookup;
  const learned = {
    compile: (p: unknown, ctx: { readonly pipeline: Pipeline }): CompiledStrategy =>
      compileLearned(p as LearnedServingParams, ctx.pipeline, { view: () => view, retentionSeconds: 86_400, defaultSplit: defaultSplitOf({ view: () => view, kinds }), kinds: () => kinds }),
  };
  const table: Readonly<Record<string, ReturnType<KindLookup['get']>>> = { ...BUILTIN_ENGINE_KINDS, learned };
  kinds = { get: (k) => (Object.hasOwn(table, k) ? table[k] : undefined) };
  const deps = { kinds, routers: [] };

  const pipeline = view.pipelines.get(PIPELINE)!;
  const agentNames = pipeline.agents.map((a) => a.name);
  const tierAgents = tierAgentsOf(pipeline);
  const trainEvery = params.trainEvery ?? TIER_TRAIN_EVERY;
  const window = params.window ?? 8000;
  const rule: GateRule = { ...gateRuleFor(true, params.gateDelta), ...o.gate };
  const prior = serializeWeights(initialWeights(compileFeatures(decl.features).dim, agentNames.length, pipeline.defaultTotalTokens, mulberry32(1)));
  const rng = mulberry32(o.seed);
  const noise = mulberry32(o.seed + 13);
  const C = o.maxCostUsd ?? tw.maxCostUsd;
  const T = o.totalTokens ?? tw.totalTokens;
  const costWeight = params.costWeight ?? 0;
  const events: LoggedEvent[] = []; // newest first, as the buffer
  const out: TierLoopResult = {
    contexts: [],
    quality: new Float64Array(o.outcomes),
    cost: new Float64Array(o.outcomes),
    assign: [],
    version: new Int32Array(o.outcomes),
    gates: [],
    trained: 0,
    reverts: [],
    changes: [],
    checks: [],
    control: new Uint8Array(o.outcomes),
    budgets: [],
    events: [],
    trainedVersions: [],
  };
  /** A trained version as the registry lists it: when it was trained (outcomes), its held-out error, activation and revert. */
  interface Version {
    readonly version: number;
    readonly tiers: SerializedTierParams;
    readonly scaling?: FeatureScaling;
    readonly at: number;
    readonly holdoutMse: number;
    readonly rows: number;
    readonly holdoutStrata?: Readonly<Record<string, StratumError>>;
    activatedAt?: number;
    reverted?: true;
  }
  const versions: Version[] = [];
  let seq = 0;
  let active: Version | undefined;
  let candidate: (Version & { proposedAt: number; look?: number }) | undefined;
  if (o.initial) {
    seq = o.initial.version ?? 1;
    active = { version: seq, tiers: o.initial.tiers, ...(o.initial.scaling ? { scaling: o.initial.scaling } : {}), at: 0, holdoutMse: o.initial.holdoutMse, rows: o.initial.rows, ...(o.initial.holdoutStrata ? { holdoutStrata: o.initial.holdoutStrata } : {}), activatedAt: 0 };
    versions.push(active);
  }
  // The guard's state as the models document keeps it (registry.ts GuardState) and the monitor's running tests.
  const guardOn = o.guard ?? true;
  const guardEvery = o.guardEvery ?? 250;
  const drift = o.driftRecovery === undefined ? DEFAULT_DRIFT : o.driftRecovery;
  let guardSince = 0;
  let steppedBack = false;
  let toControl = false;
  let holdUntil = -1;
  let run: GuardRun = NEW_RUN;
  // The control share the guard set for the serving version: raised on probation, lowered while it leads the control (absent: the strategy's own).
  let guardShare: number | undefined;
  let changeAt: number | undefined;
  let changeTs: number | undefined;
  // Explore-first (the strategy's `exploreFirst`): ended at the first retrain with that many outcomes (TrainingService.train).
  const exploreFirst = params.exploreFirst ?? 0;
  let exploreFirstEnded: number | undefined;
  const revert = (at: number, reason: 'guard' | 'drift', to: number, diff: number, hold: number) => {
    const from = active!;
    from.reverted = true;
    out.reverts.push({ at, reason, from: from.version, to, diff });
    const target = to > 0 ? versions.find((v) => v.version === to) : undefined;
    if (target) {
      target.activatedAt = at;
      active = target;
      steppedBack = true;
      toControl = false;
    } else {
      active = undefined;
      toControl = true;
    }
    holdUntil = hold;
    // A new segment of the guard's evidence (registry.revert sets `since`; the monitor then starts a new run) at the full control share.
    guardSince = at;
    run = NEW_RUN;
    guardShare = undefined;
    writeDoc();
  };
  const writeDoc = () => {
    const agents = agentNames;
    const sig = compileFeatures(decl.features).signature;
    modelsDoc = {
      pipeline: PIPELINE,
      active: active?.version ?? 0,
      signature: sig,
      agents,
      ...(active ? { weights: prior, kind: 'tiers', tiers: active.tiers, ...(active.scaling ? { scaling: active.scaling } : {}) } : {}),
      activatedAt: 0,
      ...(candidate ? { candidate: { version: candidate.version, createdAt: 0, proposedAt: candidate.proposedAt, signature: sig, agents, weights: prior, kind: 'tiers', tiers: candidate.tiers, ...(candidate.scaling ? { scaling: candidate.scaling } : {}) } } : {}),
      versions: [],
      ...(exploreFirstEnded !== undefined ? { exploreFirst: { endedAt: 0, outcomes: exploreFirstEnded } } : {}),
      ...(toControl || holdUntil >= 0 || guardShare !== undefined
        ? { guard: { reverts: [], since: guardSince, holdUntil, ...(toControl ? { toControl: true } : {}), ...(steppedBack ? { steppedBack: true } : {}), ...(guardShare !== undefined ? { controlShare: guardShare } : {}) } }
        : {}),
    };
    refresh();
  };
  if (active) writeDoc();

  const defaultAction = (e: Pick<LoggedEvent, 'f' | 'T' | 'X'>) =>
    defaultTierAction({ view: () => view, kinds: () => kinds }, pipeline, { features: e.f, totalTokens: e.T, ...(e.X !== undefined ? { maxCostUsd: e.X } : {}) });
  // Events logged at or after outcome `since` (newest first), at most `limit`.
  const eventsSince = (since: number, limit: number) => {
    const evs: LoggedEvent[] = [];
    for (const e of events) {
      if (e.t < since || evs.length >= limit) break;
      evs.push(e);
    }
    return evs;
  };
  const retrain = o.retrain ?? true;
  for (let t = 0; t < o.outcomes; t++) {
    const w = o.degraded && o.degradeAt !== undefined && t >= o.degradeAt ? o.degraded : tw;
    const c = w.sample(rng);
    const features = w.features(c);
    const id = `s${o.seed}-${t}`;
    const d = decide(deps, view, { pipeline: PIPELINE, features, totalTokens: T, maxCostUsd: C }, id);
    const budgets = agentNames.map((a) => d.budgets[a]!);
    const assign = agentNames.map((a) => w.models.indexOf(d.tiers!.models![a]!));
    const res = w.outcome(c, assign, budgets, noise);
    const record = { ...(d.meta ? { meta: d.meta } : {}), budgets: d.budgets, totalTokens: d.totalTokens, ...(d.tiers?.models ? { models: d.tiers.models } : {}) };
    const policy = loggingPolicyOf(record, pipeline);
    const ev: LoggedEvent = { id, t, s: 'learn', f: d.features, T: d.totalTokens, b: d.budgets, q: res.quality, c: res.cost, ...policy, X: C };
    events.unshift(ev);
    if (events.length > window) events.length = window;
    out.contexts.push(c);
    out.quality[t] = w.quality(c, assign, budgets);
    out.cost[t] = w.plannedCost(assign, budgets);
    out.assign.push(assign);
    out.budgets.push(budgets);
    out.control[t] = ev.a === 1 ? 1 : 0;
    const servingTiers = servingModel(view, pipeline).tiers !== undefined;
    out.version[t] = servingTiers ? (active?.version ?? 0) : 0;
    // The guard monitor: decisions of trained versions since the segment began, with a control arm, oldest first.
    if (guardOn && ev.m && ev.a !== undefined && t >= guardSince) run = accumulate(run, ev.m, ev.a, rewardOf(ev, costWeight), params.guardSegmentOutcomes ?? GUARD_DEFAULTS.segmentOutcomes, ev.z ?? 0);
    if (guardOn && active && servingTiers && (t + 1) % guardEvery === 0) {
      const verdict = judge(run, { alpha: params.guardAlpha ?? GUARD_DEFAULTS.alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin });
      if (verdict.status === 'worse') {
        const to = revertTarget(versions, active.version, run.total, steppedBack);
        revert(t + 1, 'guard', to, verdict.diff!, t + 1 + (params.guardHoldOutcomes ?? GUARD_DEFAULTS.holdOutcomes));
      } else {
        // The monitor's control share (guard-monitor.ts check → registry.setControlShare).
        const base = controlShareOf(params.controlShare);
        const share = adaptiveControlShare(base, run.total, { min: params.controlShareMin, margin: params.controlShareMargin, max: probationShareOf(params.probationShare, true), probation: params.probationMargin });
        const next = share !== base ? share : undefined;
        if (next !== guardShare) {
          guardShare = next;
          writeDoc();
        }
      }
    }
    if (!retrain || (t + 1) % trainEvery !== 0) continue;
    // A retrain, as TrainingService.train runs it: the warm start is the newest trained version (the pending candidate
    // whatever the gate says, else the serving one); drift recovery, then the gate on the pending candidate.
    if (exploreFirst > 0 && exploreFirstEnded === undefined && t + 1 >= exploreFirst) {
      exploreFirstEnded = t + 1;
      writeDoc();
    }
    const warm = candidate ?? active;
    const latest = candidate ?? (servingTiers ? active : undefined);
    // A change detected at this retrain (the gate then refuses a waiting candidate, as TrainingService.gateCandidate does).
    let changedNow = false;
    if (drift && latest && params.driftRecovery !== false) {
      const m = servingModel(view, pipeline);
      const tiers = latest === candidate ? m.candidate?.tiers : m.tiers;
      const encoder = latest === candidate ? m.candidate?.encoder : m.encoder;
      const since = latest === candidate ? candidate!.proposedAt : latest.at;
      if (tiers && encoder) {
        const check = residualTest(
          eventsSince(since, window),
          tierResidual(pipeline, params, { encoder, tiers }),
          { holdoutMse: latest.holdoutMse, rows: latest.rows, ...(latest.holdoutStrata ? { holdoutStrata: latest.holdoutStrata } : {}) },
          drift,
          tierStratum(pipeline, latest.holdoutStrata && keysGreedy(latest.holdoutStrata) ? { encoder, tiers, costWeight } : undefined),
        );
        out.checks.push({ at: t + 1, version: latest.version, z: check.z, n: check.n });
        if (check.changed) {
          changedNow = true;
          changeAt = Math.max(0, t + 1 - check.n);
          changeTs = since;
          out.changes.push({ at: t + 1, changeAt: since, version: latest.version, mse: check.mse, holdoutMse: check.holdoutMse, n: check.n });
        }
      }
    }
    const sinceChange = changeAt !== undefined ? t + 1 - changeAt : Infinity;
    const win = drift ? windowAfterChange(sinceChange, window, params.halfLife ?? 1000, drift) : { window, halfLife: params.halfLife ?? 1000, shortened: false };
    // After a change: the serving tier version against the default strategy's action on the decisions since (retireIfWorse).
    if (drift && changeTs !== undefined && sinceChange < window && active && servingTiers && params.gate !== false) {
      const m = servingModel(view, pipeline);
      const evs = eventsSince(Math.max(changeTs, active.activatedAt ?? 0), Math.max(window, rule.minEvents));
      const { retire, verdict } = retireVerdict(tierGateInput(pipeline, params, evs, { weights: m.weights, encoder: m.encoder, tiers: m.tiers! }, undefined, defaultAction), rule);
      const dd = verdict.comparisons.find((x) => x.against === 'default');
      if (retire && dd) revert(t + 1, 'drift', 0, dd.diff, t + 1);
    }
    if (candidate) {
      const m = servingModel(view, pipeline);
      const c0 = m.candidate;
      const since = events.filter((e) => e.t >= candidate!.proposedAt);
      // The lineage evidence, as TrainingService.train gives it: the serving version's decisions since it was trained
      // (since the last detected change, if later).
      const evidence = m.tiers && active ? eventsSince(Math.max(active.at, changeTs ?? 0), Math.max(window, rule.minEvents)) : undefined;
      const verdict = gateVerdict(
        tierGateInput(pipeline, params, since, { weights: c0!.weights, encoder: c0!.encoder, tiers: c0!.tiers! }, m.tiers ? { version: m.version, tiers: m.tiers, encoder: m.encoder, ...(evidence ? { evidence } : {}) } : undefined, defaultAction),
        rule,
        (candidate.look ?? 0) + 1,
      );
      if (verdict.events < rule.minEvents) continue; // it keeps waiting; nothing is trained over it
      // Too little support (or not yet shown, with looks left): it stays the candidate, judged again at the next retrain.
      if (verdict.wait && !changedNow && !o.gateOverride) {
        candidate.look = (candidate.look ?? 0) + 1;
        out.gates.push({ at: t + 1, version: candidate.version, status: 'waiting', reason: verdict.reason });
        continue;
      }
      // The guard holds automatic activations after a revert (registry.activate: the version is listed, not activated).
      const pass = o.gateOverride ? o.gateOverride(candidate, servingTiers ? active : undefined, (f, total, ceiling) => defaultAction({ f, T: total, X: ceiling })) : verdict.pass;
      // Explore-first holds the safe start until its outcome count (TrainingService.gateCandidate: listed refused, "held").
      const held = pass && (t + 1 < holdUntil || (!servingTiers && exploreFirst > 0 && t + 1 < exploreFirst));
      out.gates.push({ at: t + 1, version: candidate.version, status: pass ? (held ? 'held' : 'passed') : 'refused', reason: o.gateOverride ? 'override' : verdict.reason });
      if (pass && !held) {
        const cv = candidate.version;
        active = versions.find((x) => x.version === cv)!;
        active.activatedAt = t + 1;
        // Serving a model again ends a revert to the control (the segment and a step back stay, as guardAfterActivation keeps them).
        toControl = false;
      }
      candidate = undefined;
      writeDoc();
    }
    const recent = events.slice(0, win.window);
    const job = trainTiers(
      {
        features: decl.features,
        agents: agentNames,
        init: prior,
        ...(warm?.scaling ? { initScaling: warm.scaling } : {}),
        seed: t + 1,
        costWeight,
        ...(params.halfLife !== undefined || win.shortened ? { halfLife: win.halfLife } : {}),
      },
      { agents: tierAgents, models: pipeline.agents.map((a) => (a.models ?? []).map((m) => m.model)), needGuess: tierNeedGuess(pipeline), ...(warm ? { init: warm.tiers } : {}), ...(o.ridge ? { ridge: o.ridge } : {}), ...(o.decay !== undefined ? { decay: o.decay } : {}), ...(o.holdout ? { holdout: o.holdout } : {}) },
      recent,
      recent.length,
    );
    if (!job.trained || !job.tiers) continue;
    out.trained++;
    const v: Version = { version: ++seq, tiers: job.tiers, ...(job.scaling ? { scaling: job.scaling } : {}), at: t + 1, holdoutMse: job.metrics?.holdoutMse ?? 0, rows: job.metrics?.rows ?? 0, ...(job.metrics?.holdoutStrata ? { holdoutStrata: job.metrics.holdoutStrata } : {}) };
    versions.push(v);
    candidate = { ...v, proposedAt: t + 1 };
    writeDoc();
  }
  out.events = events;
  out.trainedVersions = versions.map((v) => ({ version: v.version, tiers: v.tiers, ...(v.scaling ? { scaling: v.scaling } : {}), holdoutMse: v.holdoutMse, rows: v.rows, at: v.at, activated: v.activatedAt !== undefined }));
  const fin = active ?? versions.at(-1);
  if (fin) out.final = { version: fin.version, tiers: fin.tiers, ...(fin.scaling ? { scaling: fin.scaling } : {}), holdoutMse: fin.holdoutMse, rows: fin.rows, ...(fin.holdoutStrata ? { holdoutStrata: fin.holdoutStrata } : {}) };
  return out;
}
