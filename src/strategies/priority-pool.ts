import { Type, type Static } from '@sinclair/typebox';
import type { Priority } from '../pipelines/schema.js';
import { waterFill } from './fit.js';
import { EstimateParams, estimateNeeds } from './estimate.js';
import type { StrategyKind } from './types.js';
import { checkAgentNames, toBudgets } from './util.js';

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

const CLASSES: readonly Priority[] = ['critical', 'standard', 'background'];

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
  compile(params, { pipeline }) {
    const agents = pipeline.agents;
    return {
      allocate({ features, totalTokens }) {
        const estimated = params.estimate ? estimateNeeds(params.estimate, pipeline, features, totalTokens) : undefined;
        const share = totalTokens / agents.length;
        const needs = agents.map((a, i) => {
          const raw = params.needs?.[a.name] ?? estimated?.[i] ?? a.maxTokens ?? share;
          return Math.max(a.minTokens, Math.min(a.maxTokens ?? Infinity, Math.ceil(raw)));
        });
        const budgets = agents.map((a) => a.minTokens);
        let pool = totalTokens - budgets.reduce((s, v) => s + v, 0);
        for (const cls of CLASSES) {
          const idx = agents.map((a, i) => (a.priority === cls ? i : -1)).filter((i) => i >= 0);
          if (idx.length === 0 || pool <= 0) continue;
          const fit = waterFill(
            idx.map((i) => ({ min: 0, cap: needs[i]! - budgets[i]!, weight: needs[i]! - budgets[i]! })),
            pool,
          );
          idx.forEach((i, k) => {
            budgets[i]! += fit[k]!;
            pool -= fit[k]!;
          });
        }
        return { budgets: toBudgets(pipeline, budgets), meta: { needs } };
      },
    };
  },
};
