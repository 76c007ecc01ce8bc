import { tierAgentsOf, tierModelsOut } from '@apportion/sdk/engine';
import { tierStratumOf } from './drift.js';
import type { LoggedEvent } from './events.js';
import type { FeatureEncoder } from './features.js';
import type { GateInput } from './gate.js';
import type { LearnedParams } from './kind.js';
import type { ModelWeights } from './model.js';
import type { Pipeline } from '../pipelines/schema.js';
import { curvesOf, plannedCostOf, predictQuality, tierGreedy, type TierAction, type TierAgent, type TierParams } from './tiers-policy.js';

/**
 * The activation gate's input for a joint model-and-tokens candidate (model tiers): every compared policy's action
 * is its budgets *and* models (the candidate's and the serving tier version's greedy action, the default strategy's
 * action through the tier stage, each under the decision's logged ceiling), matched against the logged actions on
 * the same models; the direct method is the candidate's reward model, predicted quality − λ·planned cost; the
 * observed reward is quality − λ·cost, the cost being the reported one or else the served action's planned cost.
 */
export function tierGateInput(
  pipeline: Pipeline,
  params: LearnedParams,
  events: readonly LoggedEvent[],
  candidate: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder; readonly tiers: TierParams },
  serving: { readonly version: number; readonly tiers: TierParams; readonly encoder: FeatureEncoder; readonly evidence?: readonly LoggedEvent[] } | undefined,
  /** The default strategy's action for a logged decision (defaultTierAction under its logged ceiling). */
  defaultAction: (e: LoggedEvent) => TierAction,
): GateInput {
  const agents = tierAgentsOf(pipeline);
  const costWeight = params.costWeight ?? 0;
  const opts = { epsilon: 0, perturbation: params.perturbation ?? 0.5, costWeight };
  const assignOf = (models: readonly (string | null)[] | undefined): number[] | undefined => {
    const out = pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? a.models.findIndex((m) => m.model === models?.[i]) : 0));
    return out.some((v) => v < 0) ? undefined : out;
  };
  const target = (a: TierAction) => {
    const named = tierModelsOut(pipeline, a.assign);
    return { b: a.budgets, m: pipeline.agents.map((ag) => named[ag.name] ?? null) };
  };
  const greedyOf = (p: TierParams, enc: FeatureEncoder) => (e: LoggedEvent) => {
    const g = tierGreedy(p, agents, enc.encode(e.f), e.T, e.X ?? Infinity, opts);
    return g ? target(g) : { b: pipeline.agents.map(() => -1) };
  };
  const loggedCost = (e: LoggedEvent) => {
    const assign = assignOf(e.M);
    return assign ? plannedCostOf(agents, { assign, budgets: pipeline.agents.map((a) => e.b[a.name]!) }) : 0;
  };
  // The direct method's value of an action under a joint version: predicted quality − λ·planned cost.
  const valueOf = (model: { readonly tiers: TierParams; readonly encoder: FeatureEncoder }) => (e: LoggedEvent, budgets: readonly number[], models?: readonly (string | null)[]) => {
    const assign = assignOf(models);
    if (!assign || budgets.some((b) => b < 0)) return 0;
    const action = { assign, budgets };
    return predictQuality(curvesOf(model.tiers, agents, model.encoder.encode(e.f)), action) - costWeight * plannedCostOf(agents, action);
  };
  const reward = (e: LoggedEvent) => e.q - costWeight * (e.c ?? loggedCost(e));
  return {
    events,
    agents: pipeline.agents.map((a) => a.name),
    costWeight,
    candidate,
    candidateSplit: greedyOf(candidate.tiers, candidate.encoder),
    ...(serving
      ? {
          serving: {
            version: serving.version,
            split: greedyOf(serving.tiers, serving.encoder),
            // The lineage (gate.ts): the serving version's held-out decisions, its own reward model as the direct part.
            ...(serving.evidence ? { evidence: { events: serving.evidence, value: valueOf(serving), reward } } : {}),
          },
        }
      : {}),
    defaultSplit: (e) => target(defaultAction(e)),
    value: valueOf(candidate),
    reward,
  };
}

/**
 * Drift recovery's residual for a tier version (drift.ts residualTest): its predicted reward minus the observed one
 * for a logged decision, both with the decision's cost as training takes it (the reported cost, else the served
 * action's planned cost). The reward model predicts quality and the cost is the logged one, so the residual is
 * predicted minus observed quality: the same error as the version's held-out MSE. Undefined for a decision that
 * misses an agent's budget or names a model the agent does not declare.
 */
export function tierResidual(pipeline: Pipeline, params: LearnedParams, model: { readonly encoder: FeatureEncoder; readonly tiers: TierParams }): (e: LoggedEvent) => number | undefined {
  const agents = tierAgentsOf(pipeline);
  const costWeight = params.costWeight ?? 0;
  return (e) => {
    const budgets = pipeline.agents.map((a) => e.b[a.name]);
    if (budgets.some((b) => typeof b !== 'number')) return undefined;
    const assign = pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? a.models.findIndex((m) => m.model === e.M?.[i]) : 0));
    if (assign.some((m) => m < 0)) return undefined;
    const action = { assign, budgets: budgets as number[] };
    const cost = e.c ?? plannedCostOf(agents, action);
    const predicted = predictQuality(curvesOf(model.tiers, agents, model.encoder.encode(e.f)), action) - costWeight * cost;
    return predicted - (e.q - costWeight * cost);
  };
}

/**
 * Drift recovery's stratum for a tier version (drift.ts residualTest): the decision's served model assignment and
 * whether the default strategy's action or a learned version's served it (drift.ts tierStratumOf), as the tier
 * retrain keys its held-out errors (`holdoutStrata`); undefined when a model is not declared.
 */
export function tierStratum(
  pipeline: Pipeline,
  /** The version under test, when its held-out errors are keyed by its own greedy choice too (drift.ts keysGreedy). */
  version?: { readonly encoder: FeatureEncoder; readonly tiers: TierParams; readonly costWeight: number },
): (e: LoggedEvent) => string | undefined {
  const greedy = version ? tierGreedyAssign(tierAgentsOf(pipeline), version.tiers, version.encoder, version.costWeight) : undefined;
  return (e) => {
    const assign = pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? a.models.findIndex((m) => m.model === e.M?.[i]) : 0));
    return assign.some((m) => m < 0) ? undefined : tierStratumOf(assign, e, greedy ? sameAssign(greedy(e), assign) : undefined);
  };
}

const sameAssign = (a: readonly number[] | undefined, b: readonly number[]) => !!a && a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * The model assignment of a tier version's greedy action for a logged request (its features, token total and
 * ceiling), as the gate takes it; undefined when no assignment fits the ceiling.
 */
export function tierGreedyAssign(agents: readonly TierAgent[], tiers: TierParams, encoder: FeatureEncoder, costWeight: number): (e: Pick<LoggedEvent, 'f' | 'T' | 'X'>) => readonly number[] | undefined {
  const opts = { epsilon: 0, perturbation: 0.5, costWeight };
  return (e) => tierGreedy(tiers, agents, encoder.encode(e.f), e.T, e.X ?? Infinity, opts)?.assign;
}
