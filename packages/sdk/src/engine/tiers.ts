import { EngineError, type Agent, type AllocationOutput, type ModelTier, type Pipeline } from './types.js';

/**
 * Model tiers (pure): an agent may declare candidate models (`agents[].models`, each with the USD price the
 * server resolved when the pipeline was written), and a request may carry a cost ceiling (`maxCostUsd`). This
 * file turns a strategy's token split into the served answer: a model per agent and budgets that fit the ceiling.
 *
 * Price of a budget: a token of agent i on model m costs the blended rate
 *   r(m) = ((1 − OUTPUT_SHARE) · inputPerMTokUsd + OUTPUT_SHARE · outputPerMTokUsd) / 1e6   USD per token,
 * so a split b with models m costs Σ b_i · r(m_i) when every agent uses its whole budget (the planned cost).
 *
 * A cost ceiling C becomes token budgets in three steps (docs/budgets.md, "Model tiers and cost ceilings"):
 *   1. The token total T is the request's `totalTokens`; without one (ceiling only) it is the most tokens the
 *      ceiling could buy: ⌊C / min_i r(cheapest model of i)⌋, capped at the sum of maxTokens and 100,000,000,
 *      so that only the ceiling binds.
 *   2. The strategy splits T and names the models (the pipeline's first model unless its rule says otherwise).
 *   3. When the split's planned cost exceeds C, every agent's budget above its minimum is scaled by the same
 *      factor f = (C − Σ min_i r_i) / Σ (b_i − min_i) r_i and floored, so the planned cost is ≤ C. The reserve
 *      (T − Σ b) shrinks by f too, and further so that it costs at most what is left of C at the dearest chosen
 *      rate. When even the minimums on the chosen models cost more than C, agents first move to their cheapest
 *      model, background agents first, then standard, then critical. A ceiling below the minimums on the cheapest
 *      models is refused (INFEASIBLE_COST).
 */

/** The output share assumed when a budget's tokens are priced (the rest is input). */
export const OUTPUT_SHARE = 0.3;

/** Most tokens a request may carry (the schema's bound on totalTokens). */
const MAX_TOTAL = 100_000_000;

export interface TierPrice {
  readonly inputPerMTokUsd: number;
  readonly outputPerMTokUsd: number;
}

/** USD per token of a price at the blended input/output mix. */
export function blendedRate(p: TierPrice): number {
  return ((1 - OUTPUT_SHARE) * p.inputPerMTokUsd + OUTPUT_SHARE * p.outputPerMTokUsd) / 1e6;
}

/** Whether the pipeline declares candidate models for any agent (only then do answers name models). */
export function hasTiers(pipeline: Pipeline): boolean {
  for (const a of pipeline.agents) if (a.models && a.models.length > 0) return true;
  return false;
}

/**
 * Most model assignments (the product of the agents' numbers of candidate models) the learned strategy chooses among
 * jointly with tokens: it solves the best split of every assignment per decision and logs each as a candidate
 * action. On a pipeline with more, the learned strategy learns and serves tokens only and the tier stage picks the
 * models, as for the other strategies (docs/tiers.md).
 */
export const MAX_JOINT_ASSIGNMENTS = 64;

/** Whether the learned strategy chooses models jointly with tokens on this pipeline (model tiers, and at most MAX_JOINT_ASSIGNMENTS assignments). */
export function learnsTiers(pipeline: Pipeline): boolean {
  if (!hasTiers(pipeline)) return false;
  let n = 1;
  for (const a of pipeline.agents) {
    n *= Math.max(1, a.models?.length ?? 0);
    if (n > MAX_JOINT_ASSIGNMENTS) return false;
  }
  return true;
}

/**
 * An agent's priced options: its declared models, else its single `price` (with its `model` label, possibly
 * none). Empty when the agent has no price at all.
 */
export function optionsOf(a: Agent): readonly { readonly model: string | undefined; readonly rate: number }[] {
  if (a.models && a.models.length > 0) return a.models.map((m) => ({ model: m.model, rate: blendedRate(m.price) }));
  if (a.price) return [{ model: a.model, rate: blendedRate(a.price) }];
  return [];
}

/** Index of the agent's cheapest candidate model (the first on ties). */
export function cheapestIndex(models: readonly ModelTier[]): number {
  let best = 0;
  for (let k = 1; k < models.length; k++) if (blendedRate(models[k]!.price) < blendedRate(models[best]!.price)) best = k;
  return best;
}

/** The planned cost in USD of a split on the given models (pipeline agent order; rates from `ratesOf`). */
export function plannedCost(budgets: readonly number[], rates: readonly number[]): number {
  let c = 0;
  for (let i = 0; i < budgets.length; i++) c += budgets[i]! * rates[i]!;
  return c;
}

/** Per-agent blended rates of a model choice (undefined model name: the agent's first option). */
export function ratesOf(pipeline: Pipeline, models: readonly (string | undefined)[]): number[] {
  return pipeline.agents.map((a, i) => {
    const opts = optionsOf(a);
    const m = models[i];
    const o = (m !== undefined ? opts.find((x) => x.model === m) : undefined) ?? opts[0];
    return o ? o.rate : 0;
  });
}

/**
 * Whether a planned cost is within a ceiling. Planned costs are sums of tokens × per-token rates in floating point,
 * so a ceiling written as exactly the cost of a split (e.g. the minimums' 0.06730577) can sum to a hair above it
 * (0.06730577000000001): a relative 1e-9 of the ceiling (a thousandth of a micro-dollar on a $1 ceiling, far above
 * the rounding of a sum of a few terms) plus 1e-15 USD is accepted as within. Relative at every size: an absolute
 * allowance would admit real overspend on a ceiling of a fraction of a cent.
 */
export const CEILING_TOLERANCE = { relative: 1e-9, absoluteUsd: 1e-15 } as const;

export function withinCeiling(cost: number, maxCostUsd: number): boolean {
  return cost <= maxCostUsd + CEILING_TOLERANCE.relative * Math.abs(maxCostUsd) + CEILING_TOLERANCE.absoluteUsd;
}

/** Checks that every agent can be priced under a ceiling and that the minimums fit it on the cheapest models. */
export function checkCeiling(pipeline: Pipeline, maxCostUsd: number): void {
  let minCost = 0;
  for (const a of pipeline.agents) {
    const opts = optionsOf(a);
    if (opts.length === 0) throw new EngineError('UNPRICED_AGENT', `body/maxCostUsd: agent "${a.name}" of pipeline ${pipeline.id} has neither models nor a price, so a cost ceiling cannot be applied`);
    minCost += a.minTokens * Math.min(...opts.map((o) => o.rate));
  }
  if (!withinCeiling(minCost, maxCostUsd)) {
    throw new EngineError('INFEASIBLE_COST', `body/maxCostUsd (${maxCostUsd}) is below the cost of the agents' minTokens on their cheapest models (${minCost.toFixed(6)})`);
  }
}

/**
 * The token total of a request that carries a cost ceiling but no token total (step 1 above), and at least the sum of
 * the agents' minimums: checkCeiling has made sure the ceiling pays for those on the cheapest models, while
 * ⌊C / cheapest rate⌋ of a ceiling written as exactly their cost can fall a token short in floating point.
 */
export function totalForCeiling(pipeline: Pipeline, maxCostUsd: number): number {
  let cheapest = Infinity;
  let caps = 0;
  let mins = 0;
  for (const a of pipeline.agents) {
    for (const o of optionsOf(a)) cheapest = Math.min(cheapest, o.rate);
    caps += a.maxTokens ?? Infinity;
    mins += a.minTokens;
  }
  const bought = cheapest > 0 ? Math.floor(maxCostUsd / cheapest) : MAX_TOTAL;
  return Math.max(1, mins, Math.min(MAX_TOTAL, caps, bought));
}

/** What the tier stage made of a strategy's split. */
export interface Tiered {
  /** Budgets after the ceiling (pipeline agent order is the caller's; keyed by agent). */
  readonly budgets: Record<string, number>;
  /** Model per agent (agents without a model are left out); undefined when the pipeline declares no models. */
  readonly models?: Record<string, string>;
  /** The reserve left unallocated (≤ total − Σ budgets). */
  readonly reserve: number;
  /** Planned cost of the budgets on the chosen models, when every agent is priced. */
  readonly costUsd?: number;
}

/**
 * priority-pool's models (its own choice, returned in its output): a background agent goes to its cheapest model
 * when the pool is short for it (its budget below its need) or when the split on the agents' first models would
 * exceed the cost ceiling; every other agent keeps its first model (left out). Undefined when no agent moves.
 */
export function poolModels(pipeline: Pipeline, needs: readonly number[], budgets: readonly number[], maxCostUsd: number | undefined): Record<string, string> | undefined {
  let overCeiling = false;
  if (maxCostUsd !== undefined) overCeiling = !withinCeiling(plannedCost(budgets, ratesOf(pipeline, firstModels(pipeline))), maxCostUsd);
  let out: Record<string, string> | undefined;
  pipeline.agents.forEach((a, i) => {
    if (a.priority !== 'background' || !a.models || a.models.length < 2) return;
    if (budgets[i]! < needs[i]! || overCeiling) (out ??= {})[a.name] = a.models[cheapestIndex(a.models)]!.model;
  });
  return out;
}

/** Each agent's first model (its `model` label when it declares no models). */
function firstModels(pipeline: Pipeline): (string | undefined)[] {
  return pipeline.agents.map((a) => a.models?.[0]?.model ?? a.model);
}

const DOWNGRADE_ORDER = ['background', 'standard', 'critical'] as const;

/**
 * When even the minimums on the chosen models cost more than the ceiling, agents move to their cheapest model,
 * background agents first, then standard, then critical (pipeline order within a class), until the minimums fit
 * (checkCeiling has made sure they fit on the cheapest models). Changes `models` in place.
 */
function fitMinimums(pipeline: Pipeline, models: (string | undefined)[], mins: readonly number[], maxCostUsd: number): void {
  if (withinCeiling(plannedCost(mins, ratesOf(pipeline, models)), maxCostUsd)) return;
  for (const cls of DOWNGRADE_ORDER) {
    for (let i = 0; i < pipeline.agents.length; i++) {
      const a = pipeline.agents[i]!;
      if (a.priority !== cls || !a.models || a.models.length < 2) continue;
      models[i] = a.models[cheapestIndex(a.models)]!.model;
      if (withinCeiling(plannedCost(mins, ratesOf(pipeline, models)), maxCostUsd)) return;
    }
  }
}

/**
 * Applies models and the cost ceiling to a checked split (see the module comment). The models are the strategy's
 * own choice where its output names one (priority-pool's poolModels, a learned strategy's), else each agent's first
 * model. Throws when the output names a model the agent does not declare (the engine then falls back like for any
 * strategy error).
 */
export function applyTiers(
  pipeline: Pipeline,
  out: AllocationOutput,
  budgets: Record<string, number>,
  total: number,
  maxCostUsd: number | undefined,
): Tiered {
  const tiers = hasTiers(pipeline);
  const models = firstModels(pipeline);
  if (out.models) {
    pipeline.agents.forEach((a, i) => {
      const m = out.models![a.name];
      if (m === undefined) return;
      if (!a.models?.some((x) => x.model === m)) throw new Error(`strategy chose model "${m}" that agent ${a.name} does not declare`);
      models[i] = m;
    });
  }
  const b = pipeline.agents.map((a) => budgets[a.name]!);
  let reserve = total - b.reduce((s, v) => s + v, 0);
  const priced = pipeline.agents.every((a) => optionsOf(a).length > 0);
  const mins = pipeline.agents.map((a) => a.minTokens);
  if (maxCostUsd !== undefined && priced) fitMinimums(pipeline, models, mins, maxCostUsd);
  const rates = priced ? ratesOf(pipeline, models) : undefined;
  if (maxCostUsd !== undefined && rates) {
    let cost = plannedCost(b, rates);
    if (!withinCeiling(cost, maxCostUsd)) {
      const fixed = plannedCost(mins, rates);
      const above = cost - fixed;
      let f = above > 0 ? Math.max(0, Math.min(1, (maxCostUsd - fixed) / above)) : 0;
      for (let guard = 0; guard < 60; guard++) {
        for (let i = 0; i < b.length; i++) b[i] = mins[i]! + Math.floor(f * (budgets[pipeline.agents[i]!.name]! - mins[i]!));
        cost = plannedCost(b, rates);
        if (withinCeiling(cost, maxCostUsd)) break;
        f *= 1 - 1e-9 * 2 ** guard; // floating-point rounding only: shrink until the sum is within the ceiling
      }
      reserve = Math.floor(f * reserve);
    }
    const dearest = Math.max(...rates);
    if (dearest > 0) reserve = Math.max(0, Math.min(reserve, Math.floor((maxCostUsd - cost) / dearest)));
  }
  const outBudgets: Record<string, number> = {};
  pipeline.agents.forEach((a, i) => (outBudgets[a.name] = b[i]!));
  let named: Record<string, string> | undefined;
  if (tiers) {
    named = {};
    // Only agents that declare `models` name one (docs/tiers.md); an agent's single `model` label is not a choice.
    pipeline.agents.forEach((a, i) => {
      if (models[i] !== undefined && a.models && a.models.length > 0) named![a.name] = models[i]!;
    });
  }
  return {
    budgets: outBudgets,
    ...(named ? { models: named } : {}),
    reserve,
    ...(rates && (tiers || maxCostUsd !== undefined) ? { costUsd: Math.round(plannedCost(b, rates) * 1e9) / 1e9 } : {}),
  };
}
