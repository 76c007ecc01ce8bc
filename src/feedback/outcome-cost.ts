import type { TierPrice } from '@apportion/sdk/engine';
import type { ControlView } from '../control/view.js';
import type { DecisionRecord } from '../allocation/decisions.js';
import { overridesOf } from '../kernel/price-overrides.js';
import { pipelineTenants } from '../http/tenancy.js';
import { modelPriceInForce } from '../pipelines/tiers.js';
import { outcomeCost } from './observations.js';
import type { OutcomeBody } from './schema.js';

const DAY_MS = 86_400_000;

/**
 * The cost of an outcome in USD as the outcome path counts it (outcomeCost): the decision's pipeline as the view
 * holds it now, and, for a decision made on an earlier version of it, the price in force of the model the decision
 * served each agent on: the pipeline owner's price override (its own, then `*`), else the price table on the
 * decision's day. Catalog look-ups are remembered per view (a view is one control-plane state).
 */
export function outcomeCostIn(view: ControlView, outcome: OutcomeBody, decision: Pick<DecisionRecord, 'pipeline' | 'pipelineVersion' | 'models' | 'ts'>): number | undefined {
  const pipeline = view.pipelines.get(decision.pipeline);
  if (!pipeline || pipeline.version === decision.pipelineVersion) return outcomeCost(outcome, pipeline, decision);
  const owner = pipelineTenants(view).get(decision.pipeline);
  const overrides = overridesOf(view)(owner);
  const cache = view.memo('feedback:model-prices', () => new Map<string, TierPrice | null>());
  const day = Math.floor(decision.ts / DAY_MS);
  return outcomeCost(outcome, pipeline, decision, (model, provider) => {
    const key = `${owner ?? ''}\x1f${provider ?? ''}\x1f${model}\x1f${day}`;
    let p = cache.get(key);
    if (p === undefined) {
      if (cache.size >= 10_000) cache.clear();
      cache.set(key, (p = modelPriceInForce(model, provider, overrides, decision.ts) ?? null));
    }
    return p ?? undefined;
  });
}
