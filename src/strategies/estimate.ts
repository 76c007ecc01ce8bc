import { Type, type Static } from '@sinclair/typebox';
import { compileEstimate, estimateNeeds } from '@apportion/sdk/engine';
import type { StrategyKind } from './types.js';
import { checkAgentNames } from './util.js';

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

/** Each agent's need for this request (the engine's: see estimateNeeds there). */
export { estimateNeeds };

/** Request-time estimation: give each agent what its features say it needs, scaled down to fit the total. */
export const estimateKind: StrategyKind<EstimateParams> = {
  kind: 'estimate',
  paramsSchema: EstimateParams,
  check(params, pipeline) {
    checkAgentNames(pipeline, Object.keys(params.agents), 'body/params/agents');
  },
  compile: (params, { pipeline }) => compileEstimate(params, pipeline),
};
