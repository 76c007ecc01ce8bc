import { Type, type Static } from '@sinclair/typebox';
import { compilePriorityPool } from '@apportion/sdk/engine';
import { EstimateParams } from './estimate.js';
import type { StrategyKind } from './types.js';
import { checkAgentNames } from './util.js';

export const PriorityPoolParams = Type.Object(
  {
    needs: Type.Optional(
      Type.Record(Type.String(), Type.Integer({ minimum: 0 }), { description: 'Fixed need per agent, in tokens.' }),
    ),
    estimate: Type.Optional(EstimateParams),
  },
  { additionalProperties: false },
);
export type PriorityPoolParams = Static<typeof PriorityPoolParams>;

/**
 * Elastic pool with priority classes. Every agent first gets its minimum; then critical agents draw up
 * to their need, then standard ones, then background ones best-effort from what is left. Within a class a
 * short pool is shared in proportion to need. Need comes from `needs`, else from `estimate`, else maxTokens,
 * else an equal share. What no class needs stays unallocated: the request's reserve for the budget controller.
 */
export const priorityPoolKind: StrategyKind<PriorityPoolParams> = {
  kind: 'priority-pool',
  paramsSchema: PriorityPoolParams,
  check(params, pipeline) {
    checkAgentNames(pipeline, Object.keys(params.needs ?? {}), 'body/params/needs');
    if (params.estimate) checkAgentNames(pipeline, Object.keys(params.estimate.agents), 'body/params/estimate/agents');
  },
  compile: (params, { pipeline }) => compilePriorityPool(params, pipeline),
};
