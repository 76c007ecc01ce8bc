import type { ControlView } from '../control/view.js';
import { AppError } from '../errors/app-error.js';
import type { Pipeline } from '../pipelines/schema.js';
import { offPolicyReport, type Interval, type OpeSample } from '../stats/ope.js';
import type { StrategyKinds } from '../kernel/extension-points.js';
import { BUILTIN_UNIFORM_ID } from '../strategies/schema.js';
import { builtinUniform, compiledStrategy } from '../strategies/service.js';
import type { CompiledStrategy } from '../strategies/types.js';
import { rewardOf, type LoggedEvent } from './events.js';
import { isLearned, servingModel } from './kind.js';
import { trainingParams } from './learned-strategies.js';
import { forward, predict } from './model.js';
import { mulberry32 } from './rng.js';
import { applyTiers, checkBudgets, hasTiers, tierAgentsOf, type AllocationOutput } from '@apportion/sdk/engine';
import { curvesOf, plannedCostOf, predictQuality } from './tiers-policy.js';

/** A target's split through the engine's tier stage (undefined when it cannot allocate there: no match). */
function tierStage(pipeline: Pipeline, out: AllocationOutput, total: number, maxCostUsd: number | undefined) {
  try {
    return applyTiers(pipeline, out, checkBudgets(pipeline, out.budgets, total), total, maxCostUsd);
  } catch {
    return undefined;
  }
}

/**
 * Least share of the logged decisions that must support the target's action for IPS and SNIPS to be reported. Below
 * it they estimate something else (IPS counts the unsupported decisions as reward 0, SNIPS the supported ones only),
 * and a tight interval around that would read as the target's value; DR, which covers the rest with the reward
 * model, is still given.
 */
export const IPS_MIN_SUPPORT = 0.95;

/**
 * Default action-match tolerance (share of the total; see OpeOptions.tolerance): 0.5 %. Measured with bench/ope.ts
 * (docs/learner.md, "OPE measurements"): on logs whose actions coincide exactly or differ by more than 1 % it gives
 * the same estimates as 0.02 and as 0 (exact match); on an A/B of two static splits 1.5 % of the total apart, 0.02
 * counted the variant's split as the target's and estimated the mix of the two (off by half their difference, its
 * interval missing the truth), and on learner logs it gave a static target a DR interval from the few explored
 * candidates within 2 % of its split. 0.5 % (50 tokens of 10,000) still absorbs rounding-size differences.
 */
export const OPE_TOLERANCE = 0.005;

/**
 * Off-policy evaluation of any registered strategy from a pipeline's logged decisions.
 *
 * Actions are budget vectors (on a pipeline with model tiers, budgets on their models: an action matches only on the
 * same model for every agent, and the direct method is the serving tier version's joint reward model). A decision logged by the learned strategy carries its whole candidate set
 * with exact probabilities; one logged by a deterministic strategy had probability 1 for its action. The
 * target strategy is evaluated as deterministic (its greedy split for a learned one). Two budget vectors
 * count as the same action when they differ by at most `tolerance` of the total (half the L1 distance of
 * the shares): the target is then "play what the logging policy would have played within that distance",
 * whose importance weight is exact: w = 1[a_logged ≈ a*] / Σ_{k: C_k ≈ a*} P_k. Decisions without any
 * candidate near a* have no support: IPS and SNIPS are withheld below IPS_MIN_SUPPORT, DR falls back on the reward model there.
 */
export interface OpeOptions {
  /** Newest events read. Default 20000. */
  readonly limit?: number;
  /** Default OPE_TOLERANCE (0.5 % of the total moved). */
  readonly tolerance?: number;
  /** Bootstrap resamples. Default 500. */
  readonly resamples?: number;
  readonly seed?: number;
  /** λ of the reward. Default: the pipeline's (pipelineCostWeight), the same for every target. */
  readonly costWeight?: number;
}

/**
 * λ of the reward every off-policy estimate of a pipeline uses, whichever strategy is the target: the `costWeight` of
 * the learned strategy whose parameters the pipeline's model is trained with (learned-strategies.ts trainingParams:
 * the pipeline's default strategy when it is learned, else the first learned strategy by id), 0 when the pipeline has
 * no learned strategy. Other learned strategies' λ do not matter here: one reward for every target, so estimates of
 * different targets on the same logs compare (before, λ was subtracted for a learned target only, and its `logged`
 * mean differed from a static target's on the same events).
 */
export function pipelineCostWeight(view: ControlView, pipeline: Pipeline): number {
  return Number(trainingParams(view, pipeline)?.costWeight ?? 0);
}

export interface OpeResult {
  readonly pipeline: string;
  readonly strategy: string;
  readonly events: number;
  /** Share of decisions where the logging policy could have played the target's action. */
  readonly support: number;
  readonly tolerance: number;
  readonly ess: number;
  /** Decisions whose logged action is the target's. */
  readonly matched: number;
  /** null (with `reason`) when the log does not support an estimate (stats/ope.ts offPolicyReport); IPS and SNIPS also below IPS_MIN_SUPPORT. */
  readonly ips: Interval | null;
  readonly snips: Interval | null;
  readonly dr: Interval | null;
  readonly dm: number | null;
  readonly reason: string | null;
  /** Mean reward of the logged decisions (what the logging policies earned). */
  readonly logged: number;
  /** λ of the reward (quality − λ·cost) used for every target: pipelineCostWeight unless the caller set one. */
  readonly costWeight: number;
  readonly modelVersion: number;
}

export function shareDistance(a: readonly number[], b: readonly number[], total: number): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  return d / (2 * Math.max(1, total));
}

/**
 * Importance weight of a deterministic target action for one logged event. With model tiers (`targetModels`
 * and the event's `M`/`CM`), an action matches only on the same model for every agent as well.
 */
export function importanceWeight(ev: LoggedEvent, agents: readonly string[], target: readonly number[], tolerance: number, targetModels?: readonly (string | null)[]): { w: number; supported: boolean } {
  const logged = agents.map((a) => ev.b[a]!);
  const own = ev.C && ev.P && ev.k !== undefined;
  const C = own ? ev.C! : [logged];
  const P = own ? ev.P! : [1];
  const chosen = own ? ev.k! : 0;
  const CM = own && ev.CM && ev.CM.length === C.length ? ev.CM : undefined;
  const sameModels = (k: number) => {
    const m = CM?.[k] ?? ev.M;
    return !targetModels || !m || m.every((v, i) => v === (targetModels[i] ?? null));
  };
  const near = (k: number) => shareDistance(C[k]!, target, ev.T) <= tolerance + 1e-12 && sameModels(k);
  let mass = 0;
  for (let k = 0; k < C.length; k++) if (near(k)) mass += P[k]!;
  if (mass <= 0) return { w: 0, supported: false };
  return { w: near(chosen) ? 1 / mass : 0, supported: true };
}

/** Model index per agent of named models (0 for an agent without models); undefined when one is not declared. */
function assignOf(pipeline: Pipeline, models: readonly (string | null)[] | undefined): number[] | undefined {
  const out = pipeline.agents.map((a, i) => (a.models && a.models.length > 0 ? a.models.findIndex((m) => m.model === models?.[i]) : 0));
  return out.some((v) => v < 0) ? undefined : out;
}

/**
 * The observed reward of a logged decision: quality − λ·cost. On a pipeline with model tiers the cost is the reported
 * one, else the served action's planned cost on its models, as the tier gate and training take it (tier-gate.ts).
 */
export function tierRewardOf(pipeline: Pipeline, costWeight: number): (e: LoggedEvent) => number {
  if (!hasTiers(pipeline) || costWeight === 0) return (e) => rewardOf(e, costWeight);
  const agents = tierAgentsOf(pipeline);
  return (e) => {
    if (e.c !== null) return rewardOf(e, costWeight);
    const assign = assignOf(pipeline, e.M);
    const budgets = pipeline.agents.map((a) => e.b[a.name] ?? 0);
    return e.q - costWeight * (assign ? plannedCostOf(agents, { assign, budgets }) : 0);
  };
}

export function evaluateOffPolicy(
  deps: { readonly view: ControlView; readonly kinds: StrategyKinds },
  pipeline: Pipeline,
  strategyId: string,
  events: readonly LoggedEvent[],
  opts: OpeOptions = {},
): OpeResult {
  const { view } = deps;
  const def = strategyId === BUILTIN_UNIFORM_ID ? builtinUniform(pipeline) : view.strategies.get(strategyId);
  if (!def) throw new AppError('STRATEGY_NOT_FOUND', `querystring/strategy: no strategy "${strategyId}"`);
  if (def.pipeline !== pipeline.id) throw new AppError('STRATEGY_PIPELINE_MISMATCH', `querystring/strategy: strategy "${def.id}" belongs to pipeline "${def.pipeline}"`);
  let target: CompiledStrategy;
  try {
    target = compiledStrategy(deps.kinds, view, def, pipeline);
  } catch (e) {
    throw new AppError('INVALID_STRATEGY_PARAMS', `querystring/strategy: strategy "${def.id}" cannot allocate for this pipeline (${(e as Error).message})`);
  }
  const agents = pipeline.agents.map((a) => a.name);
  const tolerance = opts.tolerance ?? OPE_TOLERANCE;
  const costWeight = opts.costWeight ?? pipelineCostWeight(view, pipeline);
  // Default-reward events (no outcome within the wait window) are left out: their reward was not observed.
  const usable = events.filter((e) => e.d !== 1 && agents.every((a) => typeof e.b[a] === 'number'));
  const serving = servingModel(view, pipeline);
  const tiered = hasTiers(pipeline) || usable.some((e) => e.X !== undefined);
  const reward = tierRewardOf(pipeline, costWeight);
  const meanReward = usable.length ? usable.reduce((s, e) => s + reward(e), 0) / usable.length : 0;
  // Model tiers: the serving tier version's joint reward model values actions (budgets on their models) for the direct method.
  const tierAgents = serving.tiers ? tierAgentsOf(pipeline) : undefined;
  const tierValue = (curves: ReturnType<typeof curvesOf>, budgets: readonly number[], models: readonly (string | null)[] | undefined): number | undefined => {
    const assign = assignOf(pipeline, models);
    if (!assign || !tierAgents) return undefined;
    const action = { assign, budgets };
    return predictQuality(curves, action) - costWeight * plannedCostOf(tierAgents, action);
  };
  const samples: OpeSample[] = [];
  let supported = 0;
  for (const ev of usable) {
    const input = { features: ev.f, totalTokens: ev.T, ...(ev.X !== undefined ? { maxCostUsd: ev.X } : {}) };
    let a: number[];
    let targetModels: (string | null)[] | undefined;
    if (isLearned(target)) {
      // On a pipeline with model tiers a learned target's action is its models with its tokens.
      const g = tiered && target.greedyTier ? target.greedyTier(input) : undefined;
      a = g ? g.budgets : target.greedy(input);
      if (g) targetModels = g.models;
    } else {
      // What the target would have served: its split through the tier stage (models, cost ceiling).
      const out = target.allocate(input);
      const t = tiered ? tierStage(pipeline, out, ev.T, ev.X) : undefined;
      a = agents.map((n) => (t ?? out).budgets[n]!);
      if (t?.models) targetModels = agents.map((n) => t.models![n] ?? null);
    }
    const { w, supported: s } = importanceWeight(ev, agents, a, tolerance, targetModels);
    if (s) supported++;
    let dmTarget = meanReward;
    let dmLogged = meanReward;
    if (serving.version > 0 && !serving.tiers) {
      const h = forward(serving.weights, serving.encoder.encode(ev.f));
      dmTarget = predict(h, a);
      dmLogged = predict(h, agents.map((n) => ev.b[n]!));
    } else if (serving.tiers && targetModels) {
      const curves = curvesOf(serving.tiers, tierAgents!, serving.encoder.encode(ev.f));
      dmTarget = tierValue(curves, a, targetModels) ?? meanReward;
      dmLogged = tierValue(curves, agents.map((n) => ev.b[n]!), ev.M) ?? meanReward;
    }
    samples.push({ r: reward(ev), w, dmTarget, dmLogged });
  }
  const report = offPolicyReport(samples, { resamples: opts.resamples ?? 500, rng: mulberry32(opts.seed ?? 1) });
  const support = samples.length ? supported / samples.length : 0;
  const partial = report.ips !== null && support < IPS_MIN_SUPPORT;
  return {
    pipeline: pipeline.id,
    strategy: def.id,
    events: samples.length,
    support,
    tolerance,
    ess: report.ess,
    matched: report.matched,
    ips: partial ? null : report.ips,
    snips: partial ? null : report.snips,
    dr: report.dr,
    dm: report.dm,
    reason: partial
      ? `partial support: the logging policy could have played the target's action on ${(support * 100).toFixed(1)} % of the ${samples.length} logged decisions (IPS and SNIPS need ${IPS_MIN_SUPPORT * 100} %: they would leave the rest out); DR covers the rest with the reward model`
      : report.reason,
    logged: meanReward,
    costWeight,
    modelVersion: serving.version,
  };
}
