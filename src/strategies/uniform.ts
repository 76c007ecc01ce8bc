import { Type } from '@sinclair/typebox';
import { waterFill } from './fit.js';
import type { StrategyKind } from './types.js';
import { toBudgets } from './util.js';

/** Equal shares of the total, within each agent's min/max. The baseline every other strategy is judged against. */
export const uniformKind: StrategyKind<Record<string, never>> = {
  kind: 'uniform',
  paramsSchema: Type.Object({}, { additionalProperties: false }),
  compile(_params, { pipeline }) {
    return {
      allocate({ totalTokens }) {
        const fit = waterFill(
          pipeline.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity, weight: 1 })),
          totalTokens,
        );
        return { budgets: toBudgets(pipeline, fit) };
      },
    };
  },
};
