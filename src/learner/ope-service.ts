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
import { forward, predict } from './model.js';
import { mulberry32 } from './rng.js';
import { applyTiers, checkBudgets, hasTiers, type AllocationOutput } from '@apportion/sdk/engine';

/** A target's split through the engine's tier stage (undefined when it cannot allocate there: no match). */
function tierStage(pipeline: Pipeline, out: AllocationOutput, total: number, maxCostUsd: number | undefined) {
  try {
    return applyTiers(pipeline, out, checkBudgets(pipeline, out.budgets, total), total, maxCostUsd);
  } catch {
    return undefined;
  }
}

/**
 * Off-policy evaluation of any registered strategy from a pipeline's logged decisions.
 *
 * Actions are budget vectors. A decision logged by the learned strategy carries its whole candidate set
 * with exact probabilities; one logged by a deterministic strategy had probability 1 for its action. The
 * target strategy is evaluated as deterministic (its greedy split for a learned one). Two budget vectors
 * count as the same action when they differ by at most `tolerance` of the total (half the L1 distance of
 * the shares): the target is then "play what the logging policy would have played within that distance",
 * whose importance weight is exact: w = 1[a_logged ≈ a*] / Σ_{k: C_k ≈ a*} P_k. Decisions without any
 * candidate near a* have no support: IPS counts them as 0, DR falls back on the reward model there.
 */
export interface OpeOptions {
  /** Newest events read. Default 20000. */
  readonly limit?: number;
  /** Default 0.02 (2 % of the total moved). */
  readonly tolerance?: number;
  /** Bootstrap resamples. Default 500. */
  readonly resamples?: number;
  readonly seed?: number;
  /** λ of the reward. Default: the target's costWeight when it is learned, else 0. */
  readonly costWeight?: number;
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
  /** null (with `reason`) when the log does not support an estimate (stats/ope.ts offPolicyReport). */
  readonly ips: Interval | null;
  readonly snips: Interval | null;
  readonly dr: Interval | null;
  readonly dm: number | null;
  readonly reason: string | null;
  /** Mean reward of the logged decisions (what the logging policies earned). */
  readonly logged: number;
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

export function evaluateOffPolicy(
  deps: { readonly view: ControlView; readonly kinds: StrategyKinds },
  pipeline: Pipeline,
  strategyId: string,
  events: readonly LoggedEvent[],
  opts: OpeOptions = {},
): OpeResult {
  const { view } = deps;
  const def = strategyId === BUILTIN_UNIFORM_ID ? builtinUniform(pipeline) : view.strategies.get(strategyId);
  if (!def) throw new AppError('STRATEGY_NOT_FOUND', `query/strategy: no strategy "${strategyId}"`);
  if (def.pipeline !== pipeline.id) throw new AppError('STRATEGY_PIPELINE_MISMATCH', `query/strategy: strategy "${def.id}" belongs to pipeline "${def.pipeline}"`);
  let target: CompiledStrategy;
  try {
    target = compiledStrategy(deps.kinds, view, def, pipeline);
  } catch (e) {
    throw new AppError('INVALID_STRATEGY_PARAMS', `query/strategy: strategy "${def.id}" cannot allocate for this pipeline (${(e as Error).message})`);
  }
  const agents = pipeline.agents.map((a) => a.name);
  const tolerance = opts.tolerance ?? 0.02;
  const costWeight = opts.costWeight ?? (def.kind === 'learned' ? Number((def.params as { costWeight?: number }).costWeight ?? 0) : 0);
  // Default-reward events (no outcome within the wait window) are left out: their reward was not observed.
  const usable = events.filter((e) => e.d !== 1 && agents.every((a) => typeof e.b[a] === 'number'));
  const serving = servingModel(view, pipeline);
  const tiered = hasTiers(pipeline) || usable.some((e) => e.X !== undefined);
  const meanReward = usable.length ? usable.reduce((s, e) => s + rewardOf(e, costWeight), 0) / usable.length : 0;
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
    }
    samples.push({ r: rewardOf(ev, costWeight), w, dmTarget, dmLogged });
  }
  const report = offPolicyReport(samples, { resamples: opts.resamples ?? 500, rng: mulberry32(opts.seed ?? 1) });
  return {
    pipeline: pipeline.id,
    strategy: def.id,
    events: samples.length,
    support: samples.length ? supported / samples.length : 0,
    tolerance,
    ess: report.ess,
    matched: report.matched,
    ips: report.ips,
    snips: report.snips,
    dr: report.dr,
    dm: report.dm,
    reason: report.reason,
    logged: meanReward,
    modelVersion: serving.version,
  };
}
