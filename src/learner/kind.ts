import { Type, type Static } from '@sinclair/typebox';
import {
  baselineStrategy,
  compileLearned,
  DEFAULT_GRACE_MS,
  defaultSplitOf,
  exploreOptions,
  isLearned,
  learnedDecision,
  policyAgentsOf,
  servingControlShare,
  servingModel,
  waitWindowMs,
  type LearnedCompiled,
  type LearnerMeta,
  type ServingModel,
} from '@apportion/sdk/engine';
import type { DecisionRecord } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { Keys } from '../redis/keys.js';
import type { AllocationInput, StrategyKind } from '../strategies/types.js';
import type { StrategyKinds } from '../kernel/extension-points.js';
import { learnerKeys } from './keys.js';
import { controlFailure } from './control-drops.js';
import { candidatesAround, candidatesWith } from './policy.js';
import type { PendingBatcher } from './pending.js';
import { pipelineTombstone } from '../pipelines/tombstone.js';
import type { ControlMeta } from './control-arm.js';
import { indexOfAction, mixDistributions } from './propensity.js';
import { keyed, modelKey, unkey } from './tiers.js';
import { learnsTiers } from '@apportion/sdk/engine';

/** Outcomes between retrains when a learned strategy does not set `trainEvery` (docs/learner.md, "The gate's power against the world's truth"). */
export const DEFAULT_TRAIN_EVERY = 250;
/** The same on a pipeline with model tiers (250 was measured worse there: docs/tiers.md, "What the gate and the retrain cadence cost"). */
export const TIER_TRAIN_EVERY = 500;

/** A learned strategy's retrain interval in outcomes on a pipeline. */
export function trainEveryOf(params: { readonly trainEvery?: number | undefined }, pipeline: Pipeline): number {
  return params.trainEvery ?? (learnsTiers(pipeline) ? TIER_TRAIN_EVERY : DEFAULT_TRAIN_EVERY);
}

/**
 * The learned strategy's serving path is the engine's (`@apportion/sdk/engine`, learned.ts: serving model,
 * exploring decision, control arm), which runs this repository's model.ts, policy.ts and features.ts; the SDK's
 * local mode runs the same. Every draw of a decision is seeded by its decision id (decisionRng), so a decision id
 * gets the same answer in both. This file adds the parameter schema, the default-reward registration and the
 * reading of logged decisions.
 */
export { baselineStrategy, DEFAULT_GRACE_MS, defaultSplitOf, exploreOptions, isLearned, learnedDecision, policyAgentsOf, servingModel, waitWindowMs };
export type { LearnedCompiled, LearnerMeta, ServingModel };

export const LearnedParams = Type.Object(
  {
    explorer: Type.Optional(Type.Union([Type.Literal('squarecb'), Type.Literal('epsilon')], { description: 'Default squarecb.' })),
    exploreFirst: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 10_000_000,
        description:
          'Explore-first: until the pipeline has this many outcomes, a share exploreFirstShare of the safe start’s decisions serves a split drawn at random over the simplex, and no trained version is activated (the gate’s passing verdicts are held); then the safe start goes on as usual until a version clears the gate. On a pipeline with model tiers the random action draws each agent’s model too. Default 0 (off; docs/learner.md, "Explore-first").',
      }),
    ),
    exploreFirstShare: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 0.9, description: 'Share of the safe start’s decisions explore-first serves at random. Default 0.5.' }),
    ),
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
    tierTokenShare: Type.Optional(
      Type.Number({ minimum: 0, maximum: 0.5, description: 'Pipelines with model tiers: share of a serving version’s decisions guaranteed to token perturbations around its greedy action (docs/tiers.md). Default 0 (off).' }),
    ),
    tierTokenSpread: Type.Optional(Type.Number({ minimum: 0.05, maximum: 3, description: 'Log-scale δ of those perturbations. Default 0.7.' })),
    tierEpsilonDecay: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 2,
        description: 'Pipelines with model tiers: exponent p of the exploration rate’s decay, exploreBudget·(from/v)^p at model version v > from, at least 0.04 (0: no decay; 0.5: the square-root schedule; docs/tiers.md). Default 1.',
      }),
    ),
    tierGapWeight: Type.Optional(
      Type.Number({ minimum: 0, maximum: 10_000, description: 'Pipelines with model tiers: γ of the exploration’s inverse-gap weighting, 1 / (1 + γ·predicted gap) (0: spread evenly; docs/tiers.md). Default 20.' }),
    ),
    shadow: Type.Optional(Type.Boolean({ description: 'Compute and log this strategy’s split beside every allocation of the pipeline. Default false.' })),
    rewardWaitSeconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 30 * 86_400, description: 'Wait this long for an outcome, then use defaultReward (0 = wait forever). Default 600.' }),
    ),
    defaultReward: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Quality assumed for a decision without an outcome. Default 0.' })),
    trainEvery: Type.Optional(Type.Integer({ minimum: 10, maximum: 1_000_000, description: 'Retrain after this many new outcomes. Default 250 (500 on a pipeline with model tiers).' })),
    trainIntervalSeconds: Type.Optional(Type.Integer({ minimum: 5, maximum: 86_400, description: 'Or after this long when there are new outcomes. Default 60.' })),
    halfLife: Type.Optional(Type.Integer({ minimum: 100, maximum: 10_000_000, description: 'Recency half-life of training rows, in events. Default 1000.' })),
    window: Type.Optional(Type.Integer({ minimum: 100, maximum: 100_000, description: 'Newest events trained on. Default 8000.' })),
    gate: Type.Optional(
      Type.Boolean({ description: 'Put every new version to the activation gate before it serves. false: each version serves as soon as it is trained (the safe start still serves until the first). Default true.' }),
    ),
    gateDelta: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'Activation gate: a new version serves only if the lower bound (bootstrap-t, 95 % over up to 3 looks) of its estimated value minus the serving version’s and the default strategy’s is ≥ −gateDelta. Default 0.02.' }),
    ),
    driftCandidateShare: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 0.5,
        description:
          'Share of decisions that serve the pending candidate’s split when it was trained while a detected change was recent (drift recovery’s shortened half-life), instead of the usual 0.2. Default: unset (0.2 throughout; docs/learner.md, "Drift recovery").',
      }),
    ),
    driftRecovery: Type.Optional(
      Type.Boolean({ description: 'Check each new version on the decisions since it was trained; after a detected change, train on the events since the change (docs/learner.md, "Drift recovery"). Default true.' }),
    ),
    // Runtime guard (docs/learner.md, "Runtime guard").
    controlShare: Type.Optional(
      Type.Number({ minimum: 0, maximum: 0.5, description: "Share of decisions served by the pipeline's default strategy as the guard's control. Default 0.05; 0 turns the guard off." }),
    ),
    controlShareMin: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 0.5,
        description:
          'Floor of the control share while a trained version leads the control arm clearly: the guard lowers the share to controlShare · controlShareMargin / lead (the lead’s lower bound), not below this. Default 0.01; at or above controlShare the share is never lowered (probation may still raise it: probationShare) (docs/learner.md, "A smaller control arm while the learned arm leads").',
      }),
    ),
    controlShareMargin: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'Lead (lower bound of learned − control reward) up to which the control arm keeps its full share. Default 0.05.' }),
    ),
    probationShare: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 0.5,
        description:
          'Control share while a serving version is on probation: from the start of the guard’s segment until the version has shown that it is no worse than the control by more than probationMargin (the lower bound of learned − control above −probationMargin, both arms with 30 outcomes), and again whenever that stops holding. Default 0.2 (on a pipeline with model tiers 0: opt-in); at or below controlShare there is no probation (docs/learner.md, "Probation").',
      }),
    ),
    probationMargin: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'Shortfall against the control (reward per decision) a serving version must rule out to leave probation. Default 0.02.' }),
    ),
    guardAlpha: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 0.2, description: 'Level of the guard’s always-valid test. Default 0.05.' })),
    guardMargin: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Reward the learned arm may fall short of control before the guard reverts. Default 0.' })),
    guardCandidate: Type.Optional(
      Type.Boolean({ description: 'The guard also judges the pending candidate’s arm (the decisions its split served) and refuses a candidate worse than the control or the rest of the learned strategy’s decisions before the gate judges it. Default true (off with controlShare 0).' }),
    ),
    guardSafeStart: Type.Optional(
      Type.Boolean({ description: 'While no trained version serves, the guard judges the learned traffic as a whole (the safe start’s exploration and the candidate) against the control arm and halves the safe start’s exploration (down to 1/8) each time it is worse. Default true (off with controlShare 0).' }),
    ),
    safeStartMargin: Type.Optional(
      Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], {
        description:
          'The safe start’s cost test beside its control test (needs guardSafeStart): its exploration’s shortfall per decision against the default strategy’s split, estimated from the decisions that drew the default split and those that drew a perturbation of it (a far tighter interval than the control arm alone gives); when its always-valid interval lies wholly below −safeStartMargin the safe start’s exploration rate alone is halved (down to 1/8; the candidate’s share is the control test’s to shrink). The candidate’s plays are left out of it (the guard’s candidate arm judges them), as are explore-first’s random splits. null (the default): the test does not act, and its estimate is still listed in GET /v1/models (guard.safeStart.current.cost) (docs/learner.md, "The safe start’s cost test").',
      }),
    ),
    candidateBackoff: Type.Optional(
      Type.Boolean({ description: 'After the runtime guard (and, per candidateBackoffGate, the activation gate with an estimate below −gateDelta) refuses candidates in a row, the next candidate waits: I × 2^k outcomes after the k-th consecutive refusal (k ≤ 5; I = trainEvery, or the outcomes between the last two retrains when fewer), reset when a candidate passes the gate. Default true.' }),
    ),
    candidateBackoffGate: Type.Optional(
      Type.Union([Type.Boolean(), Type.Literal('safe-start')], {
        description:
          'The activation gate’s refusals whose estimate against the default strategy or the serving version is below −gateDelta count in the candidate backoff like the runtime guard’s (not a refusal for too little support): true, false, or "safe-start" (only those judged while no trained version serves). Default "safe-start"; needs candidateBackoff.',
      }),
    ),
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
  /**
   * Called for a decision the guard's control arm should have had a share of (a positive serving share) and did not:
   * the control strategy could not allocate the request (control-drops.ts). `reason` says why, computed on demand.
   */
  readonly onControlUnavailable?: (pipeline: Pipeline, version: number, reason: () => string) => void;
}): StrategyKind<LearnedParams> {
  return {
    kind: 'learned',
    paramsSchema: LearnedParams,
    compile(params, { pipeline }): LearnedCompiled {
      const lk = learnerKeys(deps.keys, pipeline.id);
      const compiled = compileLearned(params, pipeline, {
        view: deps.view,
        retentionSeconds: deps.retentionSeconds,
        ...(deps.defaultSplit ? { defaultSplit: deps.defaultSplit } : {}),
        ...(deps.kinds ? { kinds: deps.kinds } : {}),
        // Registered once the allocation's record is written (pending.ts): the allocation module settles it.
        register: (id, deadline) => deps.pending.hold(lk.pending, id, deadline, { tombstone: pipelineTombstone(deps.keys, pipeline.id), version: pipeline.version }),
      });
      const dropped = deps.onControlUnavailable;
      const kinds = deps.kinds;
      if (!dropped || !kinds) return compiled;
      return {
        ...compiled,
        allocate(input) {
          const out = compiled.allocate(input);
          const meta = (out.meta as { learner?: LearnerMeta } | undefined)?.learner;
          // Served decisions only (they carry their id; a routing alternative is drawn with a seed of its own).
          if (input.decisionId !== undefined && meta && meta.x === undefined && servingControlShare(deps.view(), pipeline, params.controlShare, meta.m) > 0) {
            dropped(pipeline, meta.m, () => controlFailure(kinds(), deps.view(), pipeline, input));
          }
          return out;
        },
      };
    },
  };
}

/**
 * Registers a decision made elsewhere (the SDK's local mode, shipped through the decision ingest) for the default
 * reward, as the learned strategy registers its own: when its meta says it was registered (`w: 1`), at its
 * decision time + the strategy's wait window + grace.
 */
export function registerIngested(deps: { readonly view: () => ControlView; readonly pending: PendingBatcher; readonly keys: Keys; readonly retentionSeconds: number }, record: DecisionRecord): void {
  const m = record.meta?.learner as Partial<LearnerMeta> | undefined;
  if (m?.w !== 1) return;
  const def = deps.view().strategies.get(record.strategy);
  if (!def || def.kind !== 'learned') return;
  const waitMs = waitWindowMs(def.params as LearnedParams, deps.retentionSeconds);
  if (waitMs === 0) return;
  deps.pending.add(learnerKeys(deps.keys, record.pipeline).pending, record.id, record.ts + waitMs + DEFAULT_GRACE_MS, {
    tombstone: pipelineTombstone(deps.keys, record.pipeline),
    version: record.pipelineVersion,
  });
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
export function learnerMetaOf(
  decision: Pick<DecisionRecord, 'meta' | 'budgets' | 'totalTokens'> & { readonly models?: DecisionRecord['models'] },
  pipeline: Pipeline | undefined,
): (LearnerMeta & { readonly C: number[][]; readonly CM?: (string | null)[][] }) | undefined {
  const m = decision.meta?.learner as LearnerMeta | undefined;
  if (!m || !Array.isArray(m.g) || !Array.isArray(m.P) || !pipeline || m.g.length !== pipeline.agents.length) return undefined;
  if (Array.isArray(m.TC) || Array.isArray(m.TM)) return tierMetaOf(m, decision, pipeline);
  const around = candidatesAround(m.g, policyAgentsOf(pipeline), decision.totalTokens, m.d, Array.isArray(m.a) ? m.a : undefined);
  // Explore-first's random split, then the candidate version's: appended in the order the decision added them.
  const withRandom = Array.isArray(m.r) && m.r.length === m.g.length ? candidatesWith(around, m.r) : around;
  const C = Array.isArray(m.c) ? candidatesWith(withRandom, m.c) : withRandom;
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

/**
 * A joint model-and-tokens decision (learned strategy on a pipeline with model tiers): its logged actions (TC
 * budgets, TM models) with their probabilities, the guard's control arm mixed in (over budgets and models), and the
 * served action's index. Undefined when the served budgets or models are not the logged action (the tier stage
 * changed it) or the meta is malformed: the decision then counts as deterministic.
 */
function tierMetaOf(m: LearnerMeta, decision: Pick<DecisionRecord, 'budgets'> & { readonly models?: DecisionRecord['models'] }, pipeline: Pipeline): (LearnerMeta & { readonly C: number[][]; readonly CM: (string | null)[][] }) | undefined {
  const n = pipeline.agents.length;
  const TC = m.TC;
  const TM = m.TM;
  if (!Array.isArray(TC) || !Array.isArray(TM) || TC.length !== m.P.length || TM.length !== TC.length || !TC[m.k]) return undefined;
  if (!TC.every((c) => Array.isArray(c) && c.length === n) || !TM.every((c) => Array.isArray(c) && c.length === n)) return undefined;
  const served = keyed(
    pipeline.agents.map((a) => decision.budgets[a.name] ?? -1),
    modelKey(pipeline, decision.models),
  );
  let C = TC.map((c, i) => keyed(c, TM[i]!));
  let P = m.P;
  let k = m.k;
  if (m.x) {
    const x = m.x;
    if (!Array.isArray(x.b) || x.b.length !== n || !Array.isArray(x.m) || x.m.length !== n || !(x.s >= 0 && x.s <= 1)) return undefined;
    const mix = mixDistributions([
      { q: 1 - x.s, C, P },
      { q: x.s, C: [keyed(x.b, x.m)], P: [1] },
    ]);
    const expected = x.a === 1 ? keyed(x.b, x.m) : C[m.k]!;
    C = mix.C;
    P = mix.P;
    k = indexOfAction(C, expected);
    if (k < 0) return undefined;
  }
  if (C[k]!.some((v, i) => v !== served[i])) return undefined;
  const split = unkey(pipeline, C);
  return { ...m, C: split.C, CM: split.CM, P, k, p: P[k]! };
}
