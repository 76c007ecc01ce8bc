import { Type, type Static } from '@sinclair/typebox';
import type { Pipeline } from '../pipelines/schema.js';
import { waterFill } from './fit.js';
import type { Features, StrategyKind } from './types.js';
import { checkAgentNames, toBudgets } from './util.js';

const AgentModel = Type.Object(
  {
    base: Type.Optional(Type.Number({ minimum: 0, description: 'Tokens needed regardless of the request. Default 0.' })),
    per: Type.Optional(
      Type.Record(Type.String(), Type.Number(), {
        description: 'Tokens per unit of a numeric feature, e.g. { "messageCount": 150, "documentTokens": 0.3 }.',
      }),
    ),
    task: Type.Optional(
      Type.Record(Type.String(), Type.Number({ minimum: 0 }), { description: 'Multiplier per value of the task feature.' }),
    ),
  },
  { additionalProperties: false },
);

export const EstimateParams = Type.Object(
  {
    margin: Type.Optional(Type.Number({ minimum: 1, maximum: 10, description: 'Safety margin on every estimate. Default 1.2.' })),
    taskFeature: Type.Optional(Type.String({ description: 'Feature holding the task type. Default "taskType".' })),
    agents: Type.Record(Type.String(), AgentModel),
  },
  { additionalProperties: false },
);
export type EstimateParams = Static<typeof EstimateParams>;

/**
 * Each agent's need for this request: (base + Σ per[f]·features[f]) × task[features[taskFeature]] × margin.
 * Agents without a model need an equal share of the total. Missing or non-numeric features count as 0.
 */
export function estimateNeeds(params: EstimateParams, pipeline: Pipeline, features: Features, total: number): number[] {
  const margin = params.margin ?? 1.2;
  const taskValue = features[params.taskFeature ?? 'taskType'];
  const share = total / pipeline.agents.length;
  return pipeline.agents.map((a) => {
    const m = params.agents[a.name];
    if (!m) return share;
    let need = m.base ?? 0;
    for (const [f, coef] of Object.entries(m.per ?? {})) {
      const x = features[f];
      if (typeof x === 'number' && Number.isFinite(x)) need += coef * x;
    }
    if (typeof taskValue === 'string' && m.task && m.task[taskValue] !== undefined) need *= m.task[taskValue];
    return Math.max(0, need * margin);
  });
}

/** Request-time estimation: give each agent what its features say it needs, scaled down to fit the total. */
export const estimateKind: StrategyKind<EstimateParams> = {
  kind: 'estimate',
  paramsSchema: EstimateParams,
  check(params, pipeline) {
    checkAgentNames(pipeline, Object.keys(params.agents), 'body/params/agents');
  },
  compile(params, { pipeline }) {
    return {
      allocate({ features, totalTokens }) {
        const needs = estimateNeeds(params, pipeline, features, totalTokens);
        const fit = waterFill(
          pipeline.agents.map((a, i) => ({
            min: a.minTokens,
            cap: Math.min(a.maxTokens ?? Infinity, Math.ceil(needs[i]!)),
            weight: needs[i]!,
          })),
          totalTokens,
        );
        return { budgets: toBudgets(pipeline, fit), meta: { needs: needs.map((n) => Math.ceil(n)) } };
      },
    };
  },
};
