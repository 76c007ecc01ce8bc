import { compileFeatures, type FeatureEncoder, type FeatureScaling, type FeaturesBody } from './mirror/learner/features.js';
import { deserializeWeights, forward, initialWeights, predict, type Heads, type ModelWeights, type SerializedWeights } from './mirror/learner/model.js';
import { CANDIDATE_SHARE, TIER_CANDIDATE_SHARE, decide, decideAround, EXPLORE_DEFAULTS, greedyBudgets, optionsFor, safeStartCandidateShare, SAFE_START_EPSILON, signedPerturbation, uniformSplit, withCandidate, type ExploreOptions } from './mirror/learner/policy.js';
import { curvesOf, deserializeTierParams, drawIndex, fitsTierModels, epsilonProbs, gapProbs, initialParams, perturbAround, pushTierAction, plannedCostOf, randomTierAction, predictQuality, SAFE_START_TOKEN_SPREAD, TIER_GAP_WEIGHT, tierCandidates, tierGreedy, withTokenShare, type SerializedTierParams, type TierAction, type TierAgent, type TierParams } from './mirror/learner/tiers-policy.js';
import type { Curve } from './mirror/learner/tiers-split.js';
import { checkBudgets } from './allocate.js';
import { decisionRng, mulberry32 } from './rng.js';
import { builtinUniform, compiledStrategy, toBudgets, type KindLookup } from './strategies.js';
import { applyTiers, blendedRate, learnsTiers } from './tiers.js';
import type { AllocationInput, AllocationOutput, CompiledStrategy, ControlView, Pipeline, StrategyDef } from './types.js';

/**
 * The learned strategy's serving path (pure: no tfjs, no I/O): the pipeline's serving model from the control
 * view, one exploring decision with exact logged probabilities, the runtime guard's control arm. The reward
 * model, the policy and the feature encoder are the server's own files (src/learner/model.ts, policy.ts,
 * features.ts), copied unchanged into mirror/ when the SDK is built.
 *
 * Reproducible draws: every random draw of a decision comes from decisionRng(decisionId, …) — a stream seeded by
 * the decision id — so the server and the SDK's local mode make the same choice for the same decision id.
 */

/** The parameters serving reads (the server's LearnedParams schema validates them). */
export interface LearnedServingParams {
  readonly explorer?: 'squarecb' | 'epsilon';
  readonly epsilon?: number;
  readonly gamma?: number;
  readonly perturbation?: number;
  readonly upOnly?: boolean;
  readonly exploreBudget?: number;
  readonly exploreDecayFrom?: number;
  /**
   * Explore-first (off unless set): until the pipeline has this many outcomes, a share `exploreFirstShare` of the
   * safe start's decisions serves a split drawn at random over the simplex (with model tiers, a random joint action),
   * and no trained version is activated.
   */
  readonly exploreFirst?: number;
  /** That share (EXPLORE_FIRST_SHARE unless set). */
  readonly exploreFirstShare?: number;
  readonly rewardWaitSeconds?: number;
  readonly controlShare?: number;
  /** λ of reward = quality − λ·cost: the tier learner weighs an action's planned cost with it. */
  readonly costWeight?: number;
  /** Pipelines with model tiers: share of a serving version's decisions guaranteed to token perturbations around its greedy action (TIER_TOKEN_SHARE). */
  readonly tierTokenShare?: number;
  /** Their log-scale δ (TIER_TOKEN_SPREAD). */
  readonly tierTokenSpread?: number;
  /** Pipelines with model tiers: exponent p of the exploration rate's decay budget·(from/v)^p (TIER_EPSILON_DECAY). */
  readonly tierEpsilonDecay?: number;
  /** Pipelines with model tiers: γ of the exploration's inverse-gap weighting (TIER_GAP_WEIGHT). */
  readonly tierGapWeight?: number;
}

/** What serving reads of the pipeline's `models` control document (the server's ModelDoc has more). */
export interface ServedModelDoc {
  readonly active: number;
  readonly signature: string;
  readonly agents: readonly string[];
  readonly weights?: SerializedWeights;
  readonly scaling?: FeatureScaling;
  /** A joint model-and-tokens version (kind `tiers`, src/learner/tiers-policy.ts): its parameters. */
  readonly kind?: 'tokens' | 'tiers';
  readonly tiers?: SerializedTierParams;
  readonly candidate?: {
    readonly version: number;
    readonly signature: string;
    readonly agents: readonly string[];
    readonly weights: SerializedWeights;
    readonly scaling?: FeatureScaling;
    readonly kind?: 'tokens' | 'tiers';
    readonly tiers?: SerializedTierParams;
    /** Its share of decisions when not CANDIDATE_SHARE (policy.ts candidateShareFor: trained while a detected change was recent). */
    readonly share?: number;
  };
  /** Set by the trainer once the pipeline had the strategy's `exploreFirst` outcomes: the safe start's random splits end. */
  readonly exploreFirst?: { readonly endedAt: number; readonly outcomes: number };
  readonly guard?: {
    readonly toControl?: boolean;
    /**
     * The safe start's exploration scale after the runtime guard found its learned traffic worse than the control, and the
     * exploration rate's own factor after its cost test found the exploration too costly (policy.ts SAFE_START_MIN_SCALE).
     */
    readonly safeStart?: { readonly scale: number; readonly exploration?: number };
    /** The control arm's share the runtime guard set for the serving version: raised on probation, lowered while it leads the control clearly (absent: `controlShare`). */
    readonly controlShare?: number;
  };
}

/** Share of the safe start's decisions that explore-first serves at random (docs/learner.md, "Explore-first"). */
export const EXPLORE_FIRST_SHARE = 0.5;

/** Grace beyond the wait window before a pending decision is defaulted (outcome jobs in flight). */
export const DEFAULT_GRACE_MS = 30_000;

/** Share of a learned strategy's decisions served by the control arm unless `controlShare` says otherwise. */
export const DEFAULT_CONTROL_SHARE = 0.05;

/**
 * The reward wait window in ms (0 = wait forever). It is capped so that its deadline (window + grace) falls
 * within the decision retention (APPORTION_REWARD_WINDOW_SECONDS): the default reward is built from the
 * decision record, and a decision whose record expired can get neither an outcome nor a default.
 */
export function waitWindowMs(params: LearnedServingParams, retentionSeconds: number): number {
  const wait = (params.rewardWaitSeconds ?? 600) * 1000;
  return wait === 0 ? 0 : Math.max(1000, Math.min(wait, retentionSeconds * 1000 - DEFAULT_GRACE_MS));
}

export function exploreOptions(p: LearnedServingParams): ExploreOptions {
  return {
    explorer: p.explorer ?? 'squarecb',
    epsilon: p.epsilon ?? 0.1,
    gamma: p.gamma ?? 200,
    perturbation: p.perturbation ?? 0.5,
    upOnly: p.upOnly ?? false,
    budget: p.exploreBudget ?? EXPLORE_DEFAULTS.budget,
    decayFrom: p.exploreDecayFrom ?? EXPLORE_DEFAULTS.decayFrom,
  };
}

/** The pipeline's encoder and serving model as of one control view (memoised in the view). */
export interface ServingModel {
  readonly encoder: FeatureEncoder;
  readonly weights: ModelWeights;
  /** Model version; 0 when none serves (the safe start: the default strategy serves; `weights` are the untrained prior, never served). */
  readonly version: number;
  /** The version awaiting the activation gate, if it fits the declaration and agents. */
  readonly candidate?: { readonly version: number; readonly weights: ModelWeights; readonly encoder: FeatureEncoder; readonly tiers?: TierParams; readonly share?: number };
  /** A joint model-and-tokens version serving (pipelines with model tiers): its parameters (then `weights` is unused). */
  readonly tiers?: TierParams;
  /**
   * The safe start's exploration scale in (0, 1) when the runtime guard shrank it (absent: 1): while no version
   * serves, the exploration rate is SAFE_START_EPSILON × scale and the candidate's share safeStartCandidateShare.
   */
  readonly safeStartScale?: number;
  /**
   * The safe start's exploration rate alone, in (0, 1), when the runtime guard's cost test shrank it (absent: 1): the
   * rate is SAFE_START_EPSILON × scale × this; the candidate's share does not change with it.
   */
  readonly safeStartExploration?: number;
  /** The trainer ended explore-first (the pipeline had the strategy's `exploreFirst` outcomes): the safe start serves no random splits. */
  readonly exploreFirstEnded?: true;
}

/**
 * The tier learner's view of a pipeline's agents (pipeline order): bounds and the blended USD rate of every
 * candidate model (an agent without `models` has one option: its `price`, or 0 when unpriced).
 */
export function tierAgentsOf(pipeline: Pipeline): TierAgent[] {
  return pipeline.agents.map((a) => ({
    min: a.minTokens,
    cap: a.maxTokens ?? Infinity,
    rates: a.models && a.models.length > 0 ? a.models.map((m) => blendedRate(m.price)) : [a.price ? blendedRate(a.price) : 0],
  }));
}

/**
 * The candidate models of a pipeline's agents as a tier version records them (SerializedTierParams.models): per agent
 * in pipeline order, `provider/model` (the model alone without a provider).
 */
export function tierModelIds(pipeline: Pipeline): string[][] {
  return pipeline.agents.map((a) => (a.models ?? []).map((m) => (m.provider !== undefined ? `${m.provider}/${m.model}` : m.model)));
}

/** The tier learner's prior need guess per agent (its fresh fits and the safe start's candidates start there). */
export const tierNeedGuess = (pipeline: Pipeline) => Math.max(1, pipeline.defaultTotalTokens / Math.max(1, pipeline.agents.length));

export function servingModel(view: ControlView, pipeline: Pipeline): ServingModel {
  return view.memo(`learner:model:${pipeline.id}:${pipeline.version}`, () => {
    const decl = view.raw.kinds.features.get(pipeline.id)?.doc as FeaturesBody | undefined;
    const specs = decl?.features ?? [];
    const encoder = compileFeatures(specs);
    const doc = view.raw.kinds.models.get(pipeline.id)?.doc as ServedModelDoc | undefined;
    const agents = pipeline.agents.map((a) => a.name);
    const fits = (m: { signature: string; agents: readonly string[] }) => m.signature === encoder.signature && m.agents.join(',') === agents.join(',');
    // A tier version serves only a pipeline with model tiers, with the same candidate models per agent.
    const tierAgents = learnsTiers(pipeline) ? tierAgentsOf(pipeline) : undefined;
    const tiersOf = (m: { kind?: string; tiers?: SerializedTierParams }, enc: FeatureEncoder): TierParams | undefined => {
      if (m.kind !== 'tiers') return undefined;
      if (!tierAgents || !m.tiers) throw new Error('a tier version on a pipeline without model tiers');
      // Fitted per model index: models swapped at the same count are other models.
      if (!fitsTierModels(m.tiers, tierModelIds(pipeline))) throw new Error('a tier version fitted for other candidate models');
      return deserializeTierParams(m.tiers, tierAgents, enc.dim);
    };
    const rawScale = doc?.guard?.safeStart?.scale;
    const rawExploration = doc?.guard?.safeStart?.exploration;
    const scale = {
      ...(typeof rawScale === 'number' && rawScale > 0 && rawScale < 1 ? { safeStartScale: rawScale } : {}),
      ...(typeof rawExploration === 'number' && rawExploration > 0 && rawExploration < 1 ? { safeStartExploration: rawExploration } : {}),
      ...(doc?.exploreFirst ? { exploreFirstEnded: true as const } : {}),
    };
    let candidate: ServingModel['candidate'];
    if (doc?.candidate && fits(doc.candidate)) {
      try {
        const enc = compileFeatures(specs, doc.candidate.scaling);
        const t = tiersOf(doc.candidate, enc);
        const share = doc.candidate.share;
        candidate = { version: doc.candidate.version, weights: deserializeWeights(doc.candidate.weights), encoder: enc, ...(t ? { tiers: t } : {}), ...(typeof share === 'number' && share > 0 && share < 1 ? { share } : {}) };
      } catch {
        // Unusable candidate weights: no candidate is mixed in.
      }
    }
    if (doc && doc.active && doc.weights && fits(doc)) {
      try {
        // The version's fitted scaling: serving encodes exactly as its training did.
        const enc = compileFeatures(specs, doc.scaling);
        const t = tiersOf(doc, enc);
        return { encoder: enc, weights: deserializeWeights(doc.weights), version: doc.active, ...(t ? { tiers: t } : {}), ...(candidate ? { candidate } : {}), ...(doc.exploreFirst ? { exploreFirstEnded: true as const } : {}) };
      } catch {
        // Corrupt weights: the safe start serves rather than fail (the registry refuses to activate such a model).
      }
    }
    return { encoder, weights: initialWeights(encoder.dim, agents.length, pipeline.defaultTotalTokens, mulberry32(1)), version: 0, ...(candidate ? { candidate } : {}), ...scale };
  });
}

/**
 * The pipeline's default strategy: its `defaultStrategy` unless that is a learned strategy (or missing or not
 * compilable), else the built-in uniform strategy. It is what the safe start serves, what every new version
 * must not be worse than, and the runtime guard's control.
 */
export function baselineStrategy(view: ControlView, pipeline: Pipeline): StrategyDef {
  const def = pipeline.defaultStrategy ? view.strategies.get(pipeline.defaultStrategy) : undefined;
  return def && def.kind !== 'learned' && def.pipeline === pipeline.id ? def : builtinUniform(pipeline);
}

export const policyAgentsOf = (pipeline: Pipeline) => pipeline.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity }));

/** The default strategy's split for a request, in pipeline agent order (uniform when it cannot allocate). */
export function defaultSplitOf(core: { readonly view: () => ControlView; readonly kinds: KindLookup }): (pipeline: Pipeline, input: AllocationInput) => number[] {
  return (pipeline, input) => {
    const view = core.view();
    const agents = pipeline.agents.map((a) => a.name);
    try {
      const out = compiledStrategy(core.kinds, view, baselineStrategy(view, pipeline), pipeline).allocate({ features: input.features, totalTokens: input.totalTokens });
      const b = agents.map((a) => out.budgets[a]);
      if (b.every((v) => typeof v === 'number' && Number.isFinite(v))) return b as number[];
    } catch {
      // The decision path never throws: uniform below.
    }
    return uniformSplit(policyAgentsOf(pipeline), input.totalTokens);
  };
}

// ---- The runtime guard's control arm --------------------------------------------------------------------------

/**
 * The runtime guard's control arm (docs/learner.md, "Runtime guard"): a share of a learned strategy's
 * decisions, drawn per decision, is served by the pipeline's default strategy, so the learned arm's realised
 * reward can be compared with a concurrent control. Logged in `meta.learner.x`.
 */
export interface ControlMeta {
  /** Share of decisions the control serves (1 while the guard has reverted to control). */
  readonly s: number;
  /** 1 when this decision was served by the control. */
  readonly a: 0 | 1;
  /** The control's split for this request (pipeline agent order): logged on every decision, so the logging
   * policy's whole action distribution is known whichever arm served. */
  readonly b: number[];
  /** The control strategy's id. */
  readonly c: string;
  /** Model tiers: the control's model per agent (index in the agent's `models`, −1 for none), parallel to `b`. */
  readonly m?: number[];
  /**
   * The serving version's predicted reward of the control's split (and models) for this request, rounded to 1e-4:
   * the runtime guard subtracts it from the realised reward of either arm (docs/learner.md, "Runtime guard"). A
   * function of the request and the serving version only, fixed before the arm is drawn, so the difference of the
   * arms' means keeps its expectation while its variance drops. Absent while no trained version serves.
   */
  readonly z?: number;
}

/** The guard's offset as logged (ControlMeta `z`): rounded to 1e-4, the record stays small. */
export const guardOffset = (z: number): number | undefined => (Number.isFinite(z) ? Math.round(z * 1e4) / 1e4 : undefined);

/** The control strategy: the pipeline's default strategy when it is not itself learned, else the built-in uniform split. */
export const controlStrategyDef = baselineStrategy;

/**
 * Whether the guard (or drift recovery) has taken every model out of service on this pipeline. The learned strategy
 * then serves its safe start — the default strategy explored around, the pending candidate mixed in, the control arm
 * at its usual share — until a version clears the gate again.
 */
export function revertedToControl(view: ControlView, pipeline: Pipeline): boolean {
  const doc = view.raw.kinds.models.get(pipeline.id)?.doc as ServedModelDoc | undefined;
  return doc?.guard?.toControl === true;
}

/**
 * The share of decisions the control serves: `controlShare` (default 5 %), after a revert to the control too. (Serving
 * the control on every decision then logged each decision with the control's split at probability 1: a later
 * candidate was never played, the gate never had support for it, and no model could serve again.)
 */
export function controlShareOf(controlShare: number | undefined): number {
  return controlShare ?? DEFAULT_CONTROL_SHARE;
}

/**
 * The control arm's share of a decision made by `version`: the share the runtime guard set in the models document
 * for the serving version (the server's guard.ts adaptiveControlShare: raised to `probationShare` while the version is
 * on probation, lowered while it leads the control clearly), else `controlShare` (controlShareOf). The safe start
 * (version 0) always uses `controlShare`, and `controlShare: 0` (the guard off) always 0.
 */
export function servingControlShare(view: ControlView, pipeline: Pipeline, controlShare: number | undefined, version: number): number {
  const base = controlShareOf(controlShare);
  if (version <= 0 || !(base > 0)) return base;
  const doc = view.raw.kinds.models.get(pipeline.id)?.doc as ServedModelDoc | undefined;
  const set = doc?.guard?.controlShare;
  return set !== undefined && doc!.active === version && doc!.guard?.toControl !== true && set >= 0 && set <= MAX_CONTROL_SHARE ? set : base;
}

/** The largest control share a strategy may set (`controlShare`, `probationShare`: 0–0.5). */
export const MAX_CONTROL_SHARE = 0.5;

/**
 * The control's part of one decision: its split and whether it serves (u uniform in [0, 1)). Undefined when
 * the share is 0 or the control cannot allocate this request (the learned arm then serves it).
 */
export function controlArm(kinds: KindLookup, view: ControlView, pipeline: Pipeline, input: AllocationInput, share: number, u: number): ControlMeta | undefined {
  if (!(share > 0)) return undefined;
  const def = controlStrategyDef(view, pipeline);
  try {
    const out = compiledStrategy(kinds, view, def, pipeline).allocate({ features: input.features, totalTokens: input.totalTokens });
    const b = pipeline.agents.map((a) => out.budgets[a.name]!);
    if (b.some((v) => !Number.isInteger(v))) return undefined;
    return { s: share, a: u < share ? 1 : 0, b, c: def.id };
  } catch {
    return undefined;
  }
}

// ---- The compiled strategy ------------------------------------------------------------------------------------

/** A compiled learned strategy also exposes its greedy split and reward model (shadow mode, OPE). */
export interface LearnedCompiled extends CompiledStrategy {
  readonly learned: true;
  greedy(input: AllocationInput): number[];
  /** On a pipeline with model tiers: the greedy action, models included (agent order; null where an agent has none). */
  greedyTier?(input: AllocationInput): { readonly budgets: number[]; readonly models: (string | null)[] };
  /**
   * On a pipeline with model tiers: the joint reward model's predicted reward of an action (predicted quality −
   * λ·planned cost; the serving tier version's, the untrained prior's during the safe start). Undefined when a model
   * is not one its agent declares.
   */
  predictTier?(input: AllocationInput, budgets: readonly number[], models: readonly (string | null)[]): number | undefined;
  heads(input: AllocationInput): Heads;
  predict(input: AllocationInput, budgets: readonly number[]): number;
}

export function isLearned(c: CompiledStrategy): c is LearnedCompiled {
  return (c as Partial<LearnedCompiled>).learned === true;
}

/** Logging metadata the learned strategy puts in the decision record's meta. */
export interface LearnerMeta {
  /** Model version. */
  readonly m: number;
  /** Chosen candidate and its probability. */
  readonly k: number;
  readonly p: number;
  /** Greedy split (candidate 0) and the perturbation δ: with the bounds they reproduce every candidate. */
  readonly g: number[];
  readonly d: number;
  readonly P: number[];
  /** 1: registered for the default reward under the decision id. */
  readonly w?: 1;
  /** Written by earlier versions: the separate ticket the decision was registered under. */
  readonly tk?: string;
  /** The guard's control arm: its share and split, and whether it served (then `k`/`p` are the learner's draw
   * that was not served). */
  readonly x?: ControlMeta;
  /** The anchor candidate when it is not the uniform split (the default strategy's split while a model serves). */
  readonly a?: number[];
  /**
   * Explore-first's random split (the safe start's decisions while the pipeline has fewer outcomes than the strategy's
   * `exploreFirst`): a candidate after the safe start's own (unless it is one of them), before the candidate version's.
   */
  readonly r?: number[];
  /** The candidate version's split mixed into the decision, and that version. */
  readonly c?: number[];
  readonly cv?: number;
  /**
   * 1 when the candidate share's own draw chose the candidate version's split (a coin per decision, independent
   * of the request; the guard's control arm may still have served instead, see `x.a`): these decisions are the
   * runtime guard's candidate arm. Absent when the policy's own draw chose (even if it landed on the same split).
   */
  readonly cw?: 1;
  /**
   * Model tiers (a joint model-and-tokens decision): every candidate action logged whole — its budgets (`TC`) and
   * its model per agent (`TM`: index in the agent's `models`, −1 for none) — since they depend on the version's
   * parameters. `P`, `k` and `p` refer to them; `g` is TC[0]; the candidate version's action, when mixed in, is
   * one of them (at index `ck`).
   */
  readonly TC?: number[][];
  readonly TM?: number[][];
  readonly ck?: number;
}

export interface LearnedDeps {
  readonly view: () => ControlView;
  /** The pipeline's default strategy's split (the safe start serves it; it is every decision's anchor candidate). Default: uniform. */
  readonly defaultSplit?: (pipeline: Pipeline, input: AllocationInput) => number[];
  /** How long decision records are kept (APPORTION_REWARD_WINDOW_SECONDS). */
  readonly retentionSeconds: number;
  /** The strategy kinds (for the guard's control arm); without them no control arm is served. */
  readonly kinds?: () => KindLookup;
  /** Registers a decision for the default reward at `deadline` (epoch ms). The SDK's local mode leaves it to the server's ingest. */
  readonly register?: (decisionId: string, deadline: number) => void;
}

/**
 * Compiles the learned strategy for one pipeline: serving never calls tfjs; it evaluates the active model's
 * exported weights and explores over a small candidate set with exact logged probabilities.
 */
export function compileLearned(params: LearnedServingParams, pipeline: Pipeline, deps: LearnedDeps): LearnedCompiled {
  const explore = exploreOptions(params);
  const agents = policyAgentsOf(pipeline);
  const waitMs = waitWindowMs(params, deps.retentionSeconds);
  // The serving model of the current view, looked up once per view (the hot path asks several times per decision).
  let lastView: ControlView | undefined;
  let lastModel: ServingModel | undefined;
  const model = (): ServingModel => {
    const v = deps.view();
    if (v !== lastView || !lastModel) {
      lastModel = servingModel(v, pipeline);
      lastView = v;
    }
    return lastModel;
  };
  // The uniform anchor depends only on the total: cache it (bounded) instead of water-filling per request.
  const uniforms = new Map<number, number[]>();
  const uniformFor = (total: number) => {
    let u = uniforms.get(total);
    if (!u) {
      if (uniforms.size >= 256) uniforms.clear();
      u = uniformSplit(agents, total);
      uniforms.set(total, u);
    }
    return u;
  };
  const heads = (input: AllocationInput) => {
    const m = model();
    return forward(m.weights, m.encoder.encode(input.features));
  };
  if (learnsTiers(pipeline)) return compileTierLearned(params, pipeline, deps, { explore, waitMs, model, heads, uniformFor });
  return {
    learned: true,
    heads,
    // What it serves without exploring: the default strategy's split during the safe start.
    greedy: (input) => (model().version === 0 ? deps.defaultSplit?.(pipeline, input) ?? uniformFor(input.totalTokens) : greedyBudgets(heads(input), agents, input.totalTokens)),
    predict: (input, budgets) => predict(heads(input), budgets),
    allocate(input) {
      const m = model();
      const rng = decisionRng(input.decisionId ?? input.drawSeed, 'learner');
      const { dec, anchor, heads: servedHeads } = learnedDecision(m, agents, input, safeStartExplore(explore, params, m), uniformFor(input.totalTokens), deps.defaultSplit ? (i) => deps.defaultSplit!(pipeline, i) : undefined, rng);
      const budgets = toBudgets(pipeline, dec.budgets);
      // Logged probabilities are rounded to 1e-7 (the record stays small); the logged values are the
      // ones off-policy evaluation uses; the largest absorbs the rounding so they sum to 1.
      const probs = loggedProbs(dec.probs);
      // Registered for the default reward under its decision id (the worker builds that event from the
      // decision record if no outcome arrives in time).
      const registered = waitMs > 0 && input.decisionId !== undefined;
      if (registered) deps.register?.(input.decisionId!, Date.now() + waitMs + DEFAULT_GRACE_MS);
      const arm = deps.kinds
        ? controlArm(deps.kinds(), deps.view(), pipeline, input, servingControlShare(deps.view(), pipeline, params.controlShare, m.version), decisionRng(input.decisionId ?? input.drawSeed, 'control')())
        : undefined;
      const z = arm && servedHeads ? guardOffset(predict(servedHeads, arm.b)) : undefined;
      const x = arm && z !== undefined ? { ...arm, z } : arm;
      const meta: LearnerMeta = {
        m: m.version,
        k: dec.chosen,
        p: probs[dec.chosen]!,
        g: dec.candidates[0]!,
        d: signedPerturbation(explore),
        P: probs,
        ...(registered ? { w: 1 as const } : {}),
        ...(anchor ? { a: anchor } : {}),
        ...(dec.random ? { r: dec.random } : {}),
        ...(dec.candidateSplit ? { c: dec.candidateSplit, cv: m.candidate!.version, ...(dec.candidateDrawn ? { cw: 1 as const } : {}) } : {}),
        ...(x ? { x } : {}),
      };
      return {
        budgets: x?.a === 1 ? toBudgets(pipeline, x.b) : budgets,
        // Candidates are not logged: the greedy split, δ and the bounds reproduce them (learnerMetaOf).
        meta: { learner: meta },
      };
    },
  };
}

/**
 * The exploration options of a decision: during the safe start of a strategy with `exploreFirst`, until the trainer
 * ends it, a share of the decisions serves a random split (ExploreOptions.wideStart, kind 'random').
 */
export function safeStartExplore(explore: ExploreOptions, params: LearnedServingParams, m: ServingModel): ExploreOptions {
  if (m.version !== 0 || !((params.exploreFirst ?? 0) > 0) || m.exploreFirstEnded) return explore;
  return { ...explore, wideStart: params.exploreFirstShare ?? EXPLORE_FIRST_SHARE, wideKind: 'random' };
}

/**
 * One learned decision (pure but for `rng`). While no version serves (version 0), the safe start: the default
 * strategy's split explored around (decideAround, uniform anchor). Once one serves: its exploring policy with the
 * default strategy's split as the anchor (returned as `anchor` when it is not uniform: the log must carry it).
 * The pending candidate version's split is mixed in (CANDIDATE_SHARE, or the candidate's own `share`) so the activation gate can judge it.
 */
export function learnedDecision(
  m: ServingModel,
  agents: readonly { min: number; cap: number }[],
  input: AllocationInput,
  explore: ExploreOptions,
  uniform: number[],
  defaultSplit?: (input: AllocationInput) => number[],
  rng: () => number = Math.random,
): { dec: ReturnType<typeof decide> & { random?: number[]; candidateSplit?: number[]; candidateDrawn?: boolean }; anchor?: number[]; heads?: Heads } {
  const dflt = defaultSplit?.(input) ?? uniform;
  const isUniform = dflt.length === uniform.length && dflt.every((v, i) => v === uniform[i]);
  let dec: ReturnType<typeof decide> & { random?: number[]; candidateSplit?: number[]; candidateDrawn?: boolean };
  let anchor: number[] | undefined;
  let heads: Heads | undefined;
  const scale = m.version === 0 ? (m.safeStartScale ?? 1) : 1;
  if (m.version === 0) dec = decideAround(dflt, agents, input.totalTokens, explore, rng, uniform, SAFE_START_EPSILON * scale * (m.safeStartExploration ?? 1));
  else {
    heads = forward(m.weights, m.encoder.encode(input.features));
    dec = decide(heads, agents, input.totalTokens, optionsFor(explore, m.version), rng, dflt);
    if (!isUniform) anchor = dflt;
  }
  if (m.candidate) {
    const split = greedyBudgets(forward(m.candidate.weights, m.candidate.encoder.encode(input.features)), agents, input.totalTokens);
    const mixed = withCandidate(dec, split, safeStartCandidateShare(m.candidate.share ?? CANDIDATE_SHARE, scale), rng);
    dec = { ...mixed, ...(dec.random ? { random: dec.random } : {}), candidateSplit: split, candidateDrawn: mixed.drawn };
  }
  return { dec, ...(anchor ? { anchor } : {}), ...(heads ? { heads } : {}) };
}

/** Probabilities as logged: rounded to 1e-7 (the record stays small), the largest absorbing the rounding so they sum to 1. */
function loggedProbs(raw: readonly number[]): number[] {
  const probs = raw.map((p) => Math.round(p * 1e7) / 1e7);
  let top = 0;
  for (let k = 1; k < probs.length; k++) if (probs[k]! > probs[top]!) top = k;
  probs[top] = 0;
  probs[top] = 1 - probs.reduce((a, b) => a + b, 0);
  return probs;
}

// ---- Model tiers: the joint choice of model and tokens ---------------------------------------------------------

/**
 * Guaranteed token exploration of a serving tier version (docs/tiers.md, "Token perturbations around the greedy
 * action"): this share of its decisions goes, spread evenly, to its greedy action's token perturbations
 * (perturbAround: one agent's budget × e^{±TIER_TOKEN_SPREAD} on the greedy models, the planned cost kept), on top of
 * the gap-weighted exploration, which keeps 1 − the share. 0: off (the strategy's `tierTokenShare` sets it).
 */
export const TIER_TOKEN_SHARE = 0;
/** δ of those perturbations (the strategy's `tierTokenSpread`): the safe start's. */
export const TIER_TOKEN_SPREAD = SAFE_START_TOKEN_SPREAD;

/** Least exploration rate of the tier learner under the default explorer (docs/tiers.md). */
export const TIER_MIN_EPSILON = 0.04;

/**
 * Exponent p of the tier learner's exploration decay (the strategy's `tierEpsilonDecay`; docs/tiers.md, "How fast
 * the exploration rate decays"): budget·(from/v)^p. 1 (budget/v from version `from` on) since it was measured
 * against 0.5, the square-root schedule the joint learner was first measured with, on held-out tier worlds and six
 * loop seeds of the named ones.
 */
export const TIER_EPSILON_DECAY = 1;

/**
 * The tier learner's exploration rate at model version v: the `epsilon` explorer's ε, else (squarecb, the default)
 * the exploration budget decayed as budget·(from/v)^p for v > from (p = `decay`, TIER_EPSILON_DECAY: from/v), at
 * least TIER_MIN_EPSILON. `from` is the strategy's `exploreDecayFrom`, 1 when it sets none: with a retrain every 500
 * outcomes and p = 0.5 that is the schedule the joint learner was measured with (0.3·√(500/t), bench/learner-tiers.ts).
 * p = 0.5 is computed with Math.sqrt, so it gives exactly the rates (and draws) of the square-root rule.
 */
export function tierEpsilon(explore: ExploreOptions, version: number, decayFrom = 1, decay = TIER_EPSILON_DECAY): number {
  if (explore.explorer === 'epsilon') return explore.epsilon;
  const budget = explore.budget ?? 1;
  if (!(version > decayFrom && decayFrom > 0)) return Math.max(TIER_MIN_EPSILON, budget);
  const r = decayFrom / version;
  return Math.max(TIER_MIN_EPSILON, budget * (decay === 0.5 ? Math.sqrt(r) : Math.pow(r, decay)));
}

/** Model index per agent as logged (TM, CM keys): the index in its `models`, −1 for an agent without models. */
export function loggedModelKey(pipeline: Pipeline, assign: readonly number[]): number[] {
  return pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? assign[i]! : -1));
}

/** The models of an action by agent name (agents without `models` are left out), as a strategy output names them. */
export function tierModelsOut(pipeline: Pipeline, assign: readonly number[]): Record<string, string> {
  const out: Record<string, string> = {};
  pipeline.agents.forEach((a, i) => {
    if (a.models && a.models.length > 0) out[a.name] = a.models[assign[i]!]!.model;
  });
  return out;
}

/**
 * The default strategy's action on a pipeline with model tiers (budgets and models as the engine's tier stage
 * serves them under the request's ceiling): the safe start's greedy action, every decision's anchor, the runtime
 * guard's control and the activation gate's reference. Uniform (first models) when the default cannot allocate.
 */
export function defaultTierAction(
  deps: { readonly view: () => ControlView; readonly kinds?: () => KindLookup; readonly defaultSplit?: (pipeline: Pipeline, input: AllocationInput) => number[] },
  pipeline: Pipeline,
  input: Pick<AllocationInput, 'features' | 'totalTokens' | 'maxCostUsd'>,
): TierAction {
  const T = input.totalTokens;
  const tiered = (out: AllocationOutput): TierAction => {
    const t = applyTiers(pipeline, out, checkBudgets(pipeline, out.budgets, T), T, input.maxCostUsd);
    return {
      assign: pipeline.agents.map((a) => Math.max(0, a.models ? a.models.findIndex((m) => m.model === t.models?.[a.name]) : 0)),
      budgets: pipeline.agents.map((a) => t.budgets[a.name]!),
    };
  };
  try {
    const view = deps.view();
    const req = { features: input.features, totalTokens: T, ...(input.maxCostUsd !== undefined ? { maxCostUsd: input.maxCostUsd } : {}) };
    if (deps.kinds) return tiered(compiledStrategy(deps.kinds(), view, baselineStrategy(view, pipeline), pipeline).allocate(req));
    if (deps.defaultSplit) return tiered({ budgets: toBudgets(pipeline, deps.defaultSplit(pipeline, req)) });
  } catch {
    // The decision path never throws: uniform below.
  }
  return tiered({ budgets: toBudgets(pipeline, uniformSplit(policyAgentsOf(pipeline), T)) });
}

/** One joint decision (pure but for `rng`): candidates, their probabilities, the draw, and the candidate version's action. */
export interface TierLearnedDecision {
  readonly candidates: readonly TierAction[];
  readonly probs: readonly number[];
  readonly chosen: number;
  /** The version whose parameters decided (0: the safe start). */
  readonly version: number;
  /** Index of the candidate version's greedy action, when one was mixed in. */
  readonly ck?: number;
  /** The candidate share's own draw chose that action (LearnerMeta `cw`). */
  readonly cw?: boolean;
  /** The serving tier version's fitted curves for this request (absent during the safe start): the guard's offset reuses them. */
  readonly curves?: Curve[][];
}

/**
 * The tier learner's decision (docs/tiers.md, "The learned strategy on a pipeline with models"). While no tier
 * version serves: the safe start — the default strategy's action (index 0) with probability 1 − ε₀ (ε₀ =
 * SAFE_START_EPSILON), ε₀ spread over it and the best split of every model assignment and its token perturbations
 * under the untrained prior (so the log holds every model). Once one serves: its candidates (tiers-policy.ts:
 * greedy first, every other assignment's best split, token perturbations) with the default's action as the
 * anchor, epsilon-greedy at tierEpsilon; then `tokens.share` of the decisions (TIER_TOKEN_SHARE, 0: off) spread over
 * the greedy action's token perturbations (perturbAround at `tokens.spread`, withTokenShare). `rate` sets the
 * exploration rate's decay exponent (tierEpsilon, default TIER_EPSILON_DECAY) and the inverse-gap weight γ (default
 * TIER_GAP_WEIGHT). The pending candidate
 * version's greedy action is mixed in at TIER_CANDIDATE_SHARE. Every candidate satisfies the token total and the
 * ceiling.
 */
export function tierLearnedDecision(
  m: ServingModel,
  pipeline: Pipeline,
  agents: readonly TierAgent[],
  input: AllocationInput,
  explore: ExploreOptions,
  costWeight: number,
  anchor: TierAction,
  rng: () => number,
  decayFrom?: number,
  tokens: { readonly share: number; readonly spread: number } = { share: TIER_TOKEN_SHARE, spread: TIER_TOKEN_SPREAD },
  rate: { readonly decay?: number; readonly gapWeight?: number } = {},
  wide = 0,
): TierLearnedDecision {
  const T = input.totalTokens;
  const C = input.maxCostUsd ?? Infinity;
  const opts = { epsilon: 0, perturbation: explore.perturbation, costWeight };
  const x = m.encoder.encode(input.features);
  const candidates: TierAction[] = [];
  let probs: number[];
  let curves: Curve[][] | undefined;
  if (!m.tiers) {
    candidates.push(anchor);
    for (const c of perturbAround(anchor, agents, T, C, SAFE_START_TOKEN_SPREAD)) pushTierAction(candidates, c);
    const prior = initialParams(agents, m.encoder.dim, tierNeedGuess(pipeline));
    for (const c of tierCandidates(prior, agents, x, T, C, opts) ?? []) pushTierAction(candidates, c);
    probs = epsilonProbs(candidates.length, SAFE_START_EPSILON);
    // Explore-first: a joint action drawn at random (models and split) gets the share `wide` (logged whole, as every candidate).
    if (wide > 0) {
      const r = randomTierAction(agents, T, C, rng);
      if (r) probs = withTokenShare(candidates, probs, [r], wide);
    }
  } else {
    for (const c of tierCandidates(m.tiers, agents, x, T, C, opts) ?? [anchor]) pushTierAction(candidates, c);
    pushTierAction(candidates, anchor);
    // Inverse-gap weighted: the exploration budget goes less to actions the serving version predicts to be far worse.
    const cv = curvesOf(m.tiers, agents, x);
    curves = cv;
    probs = gapProbs(
      candidates.map((a) => predictQuality(cv, a) - costWeight * plannedCostOf(agents, a)),
      tierEpsilon(explore, m.version, decayFrom, rate.decay ?? TIER_EPSILON_DECAY),
      rate.gapWeight ?? TIER_GAP_WEIGHT,
    );
    // A guaranteed share of token exploration around the greedy action (off at share 0: the candidates and draws as without it).
    if (tokens.share > 0) probs = withTokenShare(candidates, probs, perturbAround(candidates[0]!, agents, T, C, tokens.spread), tokens.share);
  }
  let chosen = drawIndex(probs, rng());
  let ck: number | undefined;
  let cw = false;
  if (m.candidate?.tiers) {
    const cg = tierGreedy(m.candidate.tiers, agents, m.candidate.encoder.encode(input.features), T, C, opts);
    if (cg) {
      ck = pushTierAction(candidates, cg);
      const at = ck;
      probs = candidates.map((_, k) => (probs[k] ?? 0) * (1 - TIER_CANDIDATE_SHARE) + (k === at ? TIER_CANDIDATE_SHARE : 0));
      if (rng() < TIER_CANDIDATE_SHARE) {
        chosen = at;
        cw = true;
      }
    }
  }
  return { candidates, probs, chosen, version: m.tiers ? m.version : 0, ...(ck !== undefined ? { ck, cw } : {}), ...(curves ? { curves } : {}) };
}

/** The learned strategy on a pipeline with model tiers: it answers a model per agent with the tokens (AllocationOutput.models). */
function compileTierLearned(
  params: LearnedServingParams,
  pipeline: Pipeline,
  deps: LearnedDeps,
  c: { readonly explore: ExploreOptions; readonly waitMs: number; readonly model: () => ServingModel; readonly heads: (input: AllocationInput) => Heads; readonly uniformFor: (total: number) => number[] },
): LearnedCompiled {
  const agents = tierAgentsOf(pipeline);
  const costWeight = params.costWeight ?? 0;
  const tokens = { share: params.tierTokenShare ?? TIER_TOKEN_SHARE, spread: params.tierTokenSpread ?? TIER_TOKEN_SPREAD };
  const rate = { decay: params.tierEpsilonDecay ?? TIER_EPSILON_DECAY, gapWeight: params.tierGapWeight ?? TIER_GAP_WEIGHT };
  const greedyTier = (input: AllocationInput) => {
    const m = c.model();
    const anchor = () => defaultTierAction(deps, pipeline, input);
    const g = m.tiers ? (tierGreedy(m.tiers, agents, m.encoder.encode(input.features), input.totalTokens, input.maxCostUsd ?? Infinity, { epsilon: 0, perturbation: c.explore.perturbation, costWeight }) ?? anchor()) : anchor();
    const named = tierModelsOut(pipeline, g.assign);
    return { budgets: g.budgets.slice(), models: pipeline.agents.map((a) => named[a.name] ?? null) };
  };
  let prior: { readonly dim: number; readonly params: TierParams } | undefined;
  const predictTier = (input: AllocationInput, budgets: readonly number[], models: readonly (string | null)[]) => {
    const m = c.model();
    const assign = pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? a.models.findIndex((x) => x.model === models[i]) : 0));
    if (assign.some((v) => v < 0) || budgets.length !== agents.length) return undefined;
    if (!m.tiers && prior?.dim !== m.encoder.dim) prior = { dim: m.encoder.dim, params: initialParams(agents, m.encoder.dim, tierNeedGuess(pipeline)) };
    const p = m.tiers ?? prior!.params;
    const action = { assign, budgets };
    return predictQuality(curvesOf(p, agents, m.encoder.encode(input.features)), action) - costWeight * plannedCostOf(agents, action);
  };
  return {
    learned: true,
    heads: c.heads,
    greedy: (input) => greedyTier(input).budgets,
    greedyTier,
    predictTier,
    predict: (input, budgets) => predict(c.heads(input), budgets),
    allocate(input) {
      const m = c.model();
      const rng = decisionRng(input.decisionId ?? input.drawSeed, 'learner');
      const anchor = defaultTierAction(deps, pipeline, input);
      const wide = safeStartExplore(c.explore, params, m).wideStart ?? 0;
      const dec = tierLearnedDecision(m, pipeline, agents, input, c.explore, costWeight, anchor, rng, params.exploreDecayFrom, tokens, rate, m.tiers ? 0 : wide);
      const probs = loggedProbs(dec.probs);
      const registered = c.waitMs > 0 && input.decisionId !== undefined;
      if (registered) deps.register?.(input.decisionId!, Date.now() + c.waitMs + DEFAULT_GRACE_MS);
      const view = deps.view();
      const share = deps.kinds ? servingControlShare(view, pipeline, params.controlShare, dec.version) : 0;
      const z = share > 0 && dec.curves ? guardOffset(predictQuality(dec.curves, anchor) - costWeight * plannedCostOf(agents, anchor)) : undefined;
      const x: ControlMeta | undefined =
        share > 0
          ? { s: share, a: decisionRng(input.decisionId ?? input.drawSeed, 'control')() < share ? 1 : 0, b: anchor.budgets.slice(), c: baselineStrategy(view, pipeline).id, m: loggedModelKey(pipeline, anchor.assign), ...(z !== undefined ? { z } : {}) }
          : undefined;
      const served = x?.a === 1 ? anchor : dec.candidates[dec.chosen]!;
      const meta: LearnerMeta = {
        m: dec.version,
        k: dec.chosen,
        p: probs[dec.chosen]!,
        g: dec.candidates[0]!.budgets.slice(),
        d: signedPerturbation(c.explore),
        P: probs,
        TC: dec.candidates.map((a) => a.budgets.slice()),
        TM: dec.candidates.map((a) => loggedModelKey(pipeline, a.assign)),
        ...(registered ? { w: 1 as const } : {}),
        ...(dec.ck !== undefined ? { ck: dec.ck, cv: m.candidate!.version, ...(dec.cw ? { cw: 1 as const } : {}) } : {}),
        ...(x ? { x } : {}),
      };
      return { budgets: toBudgets(pipeline, served.budgets), models: tierModelsOut(pipeline, served.assign), meta: { learner: meta } };
    },
  };
}
