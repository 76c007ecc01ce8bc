import { Type, type Static } from '@sinclair/typebox';
import type { DecisionRecord } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { Keys } from '../redis/keys.js';
import type { AllocationInput, CompiledStrategy, StrategyKind } from '../strategies/types.js';
import { toBudgets } from '../strategies/util.js';
import type { StrategyKinds } from '../strategies/registry.js';
import type { StrategyDef } from '../strategies/schema.js';
import { builtinUniform, compiledStrategy } from '../strategies/service.js';
import { compileFeatures, type FeatureEncoder, type FeaturesBody } from './features.js';
import { learnerKeys } from './keys.js';
import { deserializeWeights, forward, initialWeights, predict, type Heads, type ModelWeights } from './model.js';
import { CANDIDATE_SHARE, candidatesAround, candidatesWith, decide, decideAround, EXPLORE_DEFAULTS, greedyBudgets, optionsFor, signedPerturbation, uniformSplit, withCandidate, type ExploreOptions } from './policy.js';
import type { PendingBatcher } from './pending.js';
import type { ModelDoc } from './registry.js';
import { mulberry32 } from './rng.js';
import { controlArm, controlShareOf, type ControlMeta } from './control-arm.js';
import { indexOfAction, mixDistributions } from './propensity.js';

export const LearnedParams = Type.Object(
  {
    explorer: Type.Optional(Type.Union([Type.Literal('squarecb'), Type.Literal('epsilon')], { description: 'Default squarecb.' })),
    epsilon: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Epsilon-greedy exploration rate. Default 0.1.' })),
    gamma: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6, description: 'SquareCB learning-rate γ. Default 200.' })),
    perturbation: Type.Optional(Type.Number({ minimum: 0.05, maximum: 3, description: 'Log-scale δ of the explored per-agent perturbations. Default 0.5.' })),
    exploreBudget: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'SquareCB exploration budget ε: the non-greedy candidates together get less than ε (p_k = 1/(K/ε + γ·regret_k)). Default: docs/learner.md.' }),
    ),
    exploreDecayFrom: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Shrink the exploration budget as √(from/v) for model versions v above this (0: no decay). Default: docs/learner.md.' }),
    ),
    upOnly: Type.Optional(
      Type.Boolean({ description: 'Explore only the e^{+δ} perturbations (n + 2 candidates): cheaper decisions, slower learning. Default false.' }),
    ),
    costWeight: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6, description: 'λ in reward = quality − λ·costUsd. Default 0.' })),
    shadow: Type.Optional(Type.Boolean({ description: 'Compute and log this strategy’s split beside every allocation of the pipeline. Default false.' })),
    rewardWaitSeconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 30 * 86_400, description: 'Wait this long for an outcome, then use defaultReward (0 = wait forever). Default 600.' }),
    ),
    defaultReward: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Quality assumed for a decision without an outcome. Default 0.' })),
    trainEvery: Type.Optional(Type.Integer({ minimum: 10, maximum: 1_000_000, description: 'Retrain after this many new outcomes. Default 500.' })),
    trainIntervalSeconds: Type.Optional(Type.Integer({ minimum: 5, maximum: 86_400, description: 'Or after this long when there are new outcomes. Default 60.' })),
    halfLife: Type.Optional(Type.Integer({ minimum: 100, maximum: 10_000_000, description: 'Recency half-life of training rows, in events. Default 1000.' })),
    window: Type.Optional(Type.Integer({ minimum: 100, maximum: 100_000, description: 'Newest events trained on. Default 8000.' })),
    gate: Type.Optional(
      Type.Boolean({ description: 'Put every new version to the activation gate before it serves. false: each version serves as soon as it is trained (the safe start still serves until the first). Default true.' }),
    ),
    gateDelta: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'Activation gate: a new version serves only if the lower 95 % bound of its estimated value minus the serving version’s and the default strategy’s is ≥ −gateDelta. Default 0.02.' }),
    ),
    // Runtime guard (docs/learner.md, "Runtime guard").
    controlShare: Type.Optional(
      Type.Number({ minimum: 0, maximum: 0.5, description: "Share of decisions served by the pipeline's default strategy as the guard's control. Default 0.05; 0 turns the guard off." }),
    ),
    guardAlpha: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 0.2, description: 'Level of the guard’s always-valid test. Default 0.05.' })),
    guardMargin: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Reward the learned arm may fall short of control before the guard reverts. Default 0.' })),
    guardSegmentOutcomes: Type.Optional(
      Type.Integer({ minimum: 200, maximum: 10_000_000, description: 'The guard pools evidence over at most this many decisions, then restarts its test (at a smaller level). Default 2000.' }),
    ),
    guardHoldOutcomes: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'After a revert, newly trained versions are not activated for this many outcomes. Default 1000.' }),
    ),
  },
  { additionalProperties: false },
);
export type LearnedParams = Static<typeof LearnedParams>;

/** Grace beyond the wait window before a pending decision is defaulted (outcome jobs in flight). */
export const DEFAULT_GRACE_MS = 30_000;

/**
 * The reward wait window in ms (0 = wait forever). It is capped so that its deadline (window + grace) falls
 * within the decision retention (APPORTION_REWARD_WINDOW_SECONDS): the default reward is built from the
 * decision record, and a decision whose record expired can get neither an outcome nor a default.
 */
export function waitWindowMs(params: LearnedParams, retentionSeconds: number): number {
  const wait = (params.rewardWaitSeconds ?? 600) * 1000;
  return wait === 0 ? 0 : Math.max(1000, Math.min(wait, retentionSeconds * 1000 - DEFAULT_GRACE_MS));
}

export function exploreOptions(p: LearnedParams): ExploreOptions {
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
  readonly candidate?: { readonly version: number; readonly weights: ModelWeights; readonly encoder: FeatureEncoder };
}

export function servingModel(view: ControlView, pipeline: Pipeline): ServingModel {
  return view.memo(`learner:model:${pipeline.id}:${pipeline.version}`, () => {
    const decl = view.raw.kinds.features.get(pipeline.id)?.doc as FeaturesBody | undefined;
    const specs = decl?.features ?? [];
    const encoder = compileFeatures(specs);
    const doc = view.raw.kinds.models.get(pipeline.id)?.doc as ModelDoc | undefined;
    const agents = pipeline.agents.map((a) => a.name);
    const fits = (m: { signature: string; agents: readonly string[] }) => m.signature === encoder.signature && m.agents.join(',') === agents.join(',');
    let candidate: ServingModel['candidate'];
    if (doc?.candidate && fits(doc.candidate)) {
      try {
        candidate = { version: doc.candidate.version, weights: deserializeWeights(doc.candidate.weights), encoder: compileFeatures(specs, doc.candidate.scaling) };
      } catch {
        // Unusable candidate weights: no candidate is mixed in.
      }
    }
    if (doc && doc.active && doc.weights && fits(doc)) {
      try {
        // The version's fitted scaling: serving encodes exactly as its training did.
        return { encoder: compileFeatures(specs, doc.scaling), weights: deserializeWeights(doc.weights), version: doc.active, ...(candidate ? { candidate } : {}) };
      } catch {
        // Corrupt weights: the safe start serves rather than fail (the registry refuses to activate such a model).
      }
    }
    return { encoder, weights: initialWeights(encoder.dim, agents.length, pipeline.defaultTotalTokens, mulberry32(1)), version: 0, ...(candidate ? { candidate } : {}) };
  });
}

/**
 * The pipeline's default strategy: its `defaultStrategy` unless that is a learned strategy (or missing or not
 * compilable), else the built-in uniform strategy. It is what the safe start serves and what every new version
 * must not be worse than.
 */
export function baselineStrategy(view: ControlView, pipeline: Pipeline): StrategyDef {
  const def = pipeline.defaultStrategy ? view.strategies.get(pipeline.defaultStrategy) : undefined;
  return def && def.kind !== 'learned' && def.pipeline === pipeline.id ? def : builtinUniform(pipeline);
}

/** The default strategy's split for a request, in pipeline agent order (uniform when it cannot allocate). */
export function defaultSplitOf(core: { readonly view: () => ControlView; readonly kinds: StrategyKinds }): (pipeline: Pipeline, input: AllocationInput) => number[] {
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

export const policyAgentsOf = (pipeline: Pipeline) => pipeline.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity }));

/** A compiled learned strategy also exposes its greedy split and reward model (shadow mode, OPE). */
export interface LearnedCompiled extends CompiledStrategy {
  readonly learned: true;
  greedy(input: AllocationInput): number[];
  heads(input: AllocationInput): Heads;
  predict(input: AllocationInput, budgets: readonly number[]): number;
}

export function isLearned(c: CompiledStrategy): c is LearnedCompiled {
  return (c as Partial<LearnedCompiled>).learned === true;
}

/**
 * The `learned` strategy kind. Serving never calls tfjs: it evaluates the active model's exported weights
 * (model.ts) and explores over a small candidate set with exact logged probabilities (policy.ts).
 * Each decision registers its id in the pipeline's pending set (batched, see pending.ts) so a decision
 * without an outcome gets the default reward after the wait window.
 */
export function learnedKind(deps: {
  readonly view: () => ControlView;
  /**
   * The pipeline's default strategy's split for a request (the safe start serves it; it is every decision's anchor
   * candidate). Default: uniform.
   */
  readonly defaultSplit?: (pipeline: Pipeline, input: AllocationInput) => number[];
  readonly pending: PendingBatcher;
  readonly keys: Keys;
  /** How long decision records are kept (APPORTION_REWARD_WINDOW_SECONDS). */
  readonly retentionSeconds: number;
  /** The strategy kinds (for the guard's control arm); without them no control arm is served. */
  readonly kinds?: () => StrategyKinds;
}): StrategyKind<LearnedParams> {
  return {
    kind: 'learned',
    paramsSchema: LearnedParams,
    compile(params, { pipeline }): LearnedCompiled {
      const explore = exploreOptions(params);
      const agents = policyAgentsOf(pipeline);
      const lk = learnerKeys(deps.keys, pipeline.id);
      const waitMs = waitWindowMs(params, deps.retentionSeconds);
      const model = () => servingModel(deps.view(), pipeline);
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
      return {
        learned: true,
        heads,
        // What it serves without exploring: the default strategy's split during the safe start.
        greedy: (input) => (model().version === 0 ? deps.defaultSplit?.(pipeline, input) ?? uniformFor(input.totalTokens) : greedyBudgets(heads(input), agents, input.totalTokens)),
        predict: (input, budgets) => predict(heads(input), budgets),
        allocate(input) {
          const m = model();
          const { dec, anchor } = learnedDecision(m, agents, input, explore, uniformFor(input.totalTokens), deps.defaultSplit ? (i) => deps.defaultSplit!(pipeline, i) : undefined);
          const budgets = toBudgets(pipeline, dec.budgets);
          // Logged probabilities are rounded to 1e-7 (the record stays small); the logged values are the
          // ones off-policy evaluation uses; the largest absorbs the rounding so they sum to 1.
          const probs = dec.probs.map((p) => Math.round(p * 1e7) / 1e7);
          let top = 0;
          for (let k = 1; k < probs.length; k++) if (probs[k]! > probs[top]!) top = k;
          probs[top] = 0;
          probs[top] = 1 - probs.reduce((a, b) => a + b, 0);
          // Registered for the default reward under its decision id (the worker builds that event from the
          // decision record if no outcome arrives in time).
          const registered = waitMs > 0 && input.decisionId !== undefined;
          if (registered) deps.pending.add(lk.pending, input.decisionId!, Date.now() + waitMs + DEFAULT_GRACE_MS);
          const x = deps.kinds ? controlArm(deps.kinds(), deps.view(), pipeline, input, controlShareOf(deps.view(), pipeline, params.controlShare), Math.random()) : undefined;
          const meta: LearnerMeta = {
            m: m.version,
            k: dec.chosen,
            p: probs[dec.chosen]!,
            g: dec.candidates[0]!,
            d: signedPerturbation(explore),
            P: probs,
            ...(registered ? { w: 1 as const } : {}),
            ...(anchor ? { a: anchor } : {}),
            ...(dec.candidateSplit ? { c: dec.candidateSplit, cv: m.candidate!.version } : {}),
            ...(x ? { x } : {}),
          };
          return {
            budgets: x?.a === 1 ? toBudgets(pipeline, x.b) : budgets,
            // Candidates are not logged: the greedy split, δ and the bounds reproduce them (learnerMetaOf).
            meta: { learner: meta },
          };
        },
      };
    },
  };
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
  /** The candidate version's split mixed into the decision, and that version. */
  readonly c?: number[];
  readonly cv?: number;
}

/**
 * One learned decision (pure but for `rng`). While no version serves (version 0), the safe start: the default
 * strategy's split explored around (decideAround, uniform anchor). Once one serves: its exploring policy with the
 * default strategy's split as the anchor (returned as `anchor` when it is not uniform: the log must carry it).
 * The pending candidate version's split is mixed in (CANDIDATE_SHARE) so the activation gate can judge it.
 */
export function learnedDecision(
  m: ServingModel,
  agents: readonly { min: number; cap: number }[],
  input: AllocationInput,
  explore: ExploreOptions,
  uniform: number[],
  defaultSplit?: (input: AllocationInput) => number[],
  rng: () => number = Math.random,
): { dec: ReturnType<typeof decide> & { candidateSplit?: number[] }; anchor?: number[] } {
  const dflt = defaultSplit?.(input) ?? uniform;
  const isUniform = dflt.length === uniform.length && dflt.every((v, i) => v === uniform[i]);
  let dec: ReturnType<typeof decide> & { candidateSplit?: number[] };
  let anchor: number[] | undefined;
  if (m.version === 0) dec = decideAround(dflt, agents, input.totalTokens, explore, rng, uniform);
  else {
    dec = decide(forward(m.weights, m.encoder.encode(input.features)), agents, input.totalTokens, optionsFor(explore, m.version), rng, dflt);
    if (!isUniform) anchor = dflt;
  }
  if (m.candidate) {
    const split = greedyBudgets(forward(m.candidate.weights, m.candidate.encoder.encode(input.features)), agents, input.totalTokens);
    dec = { ...withCandidate(dec, split, CANDIDATE_SHARE, rng), candidateSplit: split };
  }
  return { dec, ...(anchor ? { anchor } : {}) };
}

/** The id a decision was registered under for the default reward, or '' when it was not registered. */
export function pendingTicketOf(meta: Readonly<Record<string, unknown>> | undefined, decisionId: string): string {
  const m = meta?.learner as Partial<LearnerMeta> | undefined;
  if (!m) return '';
  if (typeof m.tk === 'string') return m.tk;
  return m.w === 1 ? decisionId : '';
}

/**
 * The learner's meta of a decision with its candidate set rebuilt. Undefined when the decision was not made
 * by a learned strategy, or when the rebuilt set does not match what was logged (the pipeline's bounds
 * changed in between): the decision then counts as deterministic.
 */
export function learnerMetaOf(decision: Pick<DecisionRecord, 'meta' | 'budgets' | 'totalTokens'>, pipeline: Pipeline | undefined): (LearnerMeta & { readonly C: number[][] }) | undefined {
  const m = decision.meta?.learner as LearnerMeta | undefined;
  if (!m || !Array.isArray(m.g) || !Array.isArray(m.P) || !pipeline || m.g.length !== pipeline.agents.length) return undefined;
  const around = candidatesAround(m.g, policyAgentsOf(pipeline), decision.totalTokens, m.d, Array.isArray(m.a) ? m.a : undefined);
  const C = Array.isArray(m.c) ? candidatesWith(around, m.c) : around;
  const served = pipeline.agents.map((a) => decision.budgets[a.name]);
  if (C.length !== m.P.length || !C[m.k]) return undefined;
  if (m.x) return withControlArm({ ...m, x: m.x }, C, served);
  if (C[m.k]!.some((v, i) => v !== served[i])) return undefined;
  return { ...m, C };
}

/**
 * A decision with a control arm: the logged distribution is the mixture (1 − s)·learner + s·control, and the
 * chosen action is the one served (the learner's draw, or the control's split).
 */
function withControlArm(m: LearnerMeta & { readonly x: ControlMeta }, C: number[][], served: readonly (number | undefined)[]): (LearnerMeta & { readonly C: number[][] }) | undefined {
  const { x } = m;
  if (!Array.isArray(x.b) || x.b.length !== served.length || !(x.s >= 0 && x.s <= 1)) return undefined;
  const expected = x.a === 1 ? x.b : C[m.k]!;
  if (expected.some((v, i) => v !== served[i])) return undefined;
  const mix = mixDistributions([
    { q: 1 - x.s, C, P: m.P },
    { q: x.s, C: [x.b], P: [1] },
  ]);
  const k = indexOfAction(mix.C, expected);
  if (k < 0) return undefined;
  return { ...m, C: mix.C, P: mix.P, k, p: mix.P[k]! };
}
