import type { DecisionRecord } from '../allocation/decisions.js';
import type { TierPrice } from '@apportion/sdk/engine';
import type { Pipeline } from '../pipelines/schema.js';
import type { OutcomeBody } from './schema.js';

/** A budget counts as hit when the agent consumed at least this share of it (or reported truncation). */
export const CEILING_HIT_SHARE = 0.95;

export interface AgentObservation {
  readonly a: string;
  /** Utilization: consumed ÷ allocated. */
  readonly u: number;
  /** Ceiling hit (≥ 95 % used, or truncated). */
  readonly h: 0 | 1;
  /** Reported truncation. */
  readonly t: 0 | 1;
  readonly c: number;
  readonly b: number;
}

/**
 * Per-agent observations for the agents the outcome reports usage for (pure). Consumed = input + output. On a
 * pipeline with model tiers each agent is observed a second time as `<agent>@<model>` (agent names cannot contain
 * `@`), so statistics are kept per agent and per agent and served model.
 */
export function observe(decision: DecisionRecord, outcome: OutcomeBody): AgentObservation[] {
  const out: AgentObservation[] = [];
  for (const [agent, u] of Object.entries(outcome.usage ?? {})) {
    // Own properties only: a usage entry named `constructor` or `toString` is not an agent of the decision.
    if (!Object.hasOwn(decision.budgets, agent)) continue;
    const allocated = decision.budgets[agent];
    if (typeof allocated !== 'number') continue;
    const consumed = (u.inputTokens ?? 0) + (u.outputTokens ?? 0);
    const truncated = u.truncated === true;
    const util = allocated > 0 ? consumed / allocated : consumed > 0 ? 1 : 0;
    const hit = truncated || (allocated > 0 && consumed >= CEILING_HIT_SHARE * allocated);
    const o: AgentObservation = { a: agent, u: util, h: hit ? 1 : 0, t: truncated ? 1 : 0, c: consumed, b: allocated };
    out.push(o);
    const model = decision.models && Object.hasOwn(decision.models, agent) ? decision.models[agent] : undefined;
    if (model !== undefined) out.push({ ...o, a: `${agent}@${model}` });
  }
  return out;
}

/** A model's price in force now (the tenant's override, else the price table), or undefined when nothing prices it. */
export type PriceInForce = (model: string, provider: string | undefined) => TierPrice | undefined;

/**
 * The outcome's cost in USD: as reported, else priced from usage when every agent that reported usage has a price.
 * An agent the decision served on a model (model tiers) is priced at that model's price, never another's:
 * - the decision's pipeline version is the current one: the price the version stores for that model;
 * - the pipeline was written again since (models or prices may have changed): `priceInForce` of the recorded model
 *   (the tenant's price override, else the price table at the decision's time), whether or not the current version
 *   still lists it.
 * An agent served without a model is priced by its `price`. An agent nothing prices makes the outcome's cost
 * unknown (undefined): it is counted in the statistics' `count` but not in their `cost.n`, never as zero and never at
 * another model's price.
 */
export function outcomeCost(
  outcome: OutcomeBody,
  pipeline: Pipeline | undefined,
  decision?: Pick<DecisionRecord, 'models' | 'pipelineVersion'>,
  priceInForce?: PriceInForce,
): number | undefined {
  if (outcome.costUsd !== undefined) return outcome.costUsd;
  // No reporting agent (`usage: {}`): the cost is unknown, never zero.
  if (!pipeline || !outcome.usage || Object.keys(outcome.usage).length === 0) return undefined;
  const sameVersion = decision === undefined || decision.pipelineVersion === pipeline.version;
  let usd = 0;
  for (const [agent, u] of Object.entries(outcome.usage)) {
    const a = pipeline.agents.find((x) => x.name === agent);
    const served = decision?.models && Object.hasOwn(decision.models, agent) ? decision.models[agent] : undefined;
    let price: TierPrice | undefined;
    if (served !== undefined) {
      const listed = a?.models?.find((m) => m.model === served);
      price = sameVersion ? listed?.price : priceInForce?.(served, listed?.provider);
    } else {
      price = a?.price;
    }
    if (!price) return undefined;
    usd += ((u.inputTokens ?? 0) * price.inputPerMTokUsd + (u.outputTokens ?? 0) * price.outputPerMTokUsd) / 1e6;
  }
  return usd;
}
