import { Type, type Static } from '@sinclair/typebox';
import { DECISION_ID_PATTERN } from '../allocation/decisions.js';

const Count = Type.Integer({ minimum: 0, maximum: 100_000_000 });

export const AgentUsage = Type.Object(
  {
    inputTokens: Type.Optional(Count),
    outputTokens: Type.Optional(Count),
    truncated: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const OutcomeBody = Type.Object(
  {
    decisionId: Type.String({ pattern: DECISION_ID_PATTERN }),
    quality: Type.Number({ minimum: 0, maximum: 1 }),
    usage: Type.Optional(Type.Record(Type.String(), AgentUsage)),
    costUsd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);
export type OutcomeBody = Static<typeof OutcomeBody>;

export const OutcomeAccepted = Type.Object({ accepted: Type.Literal(true), decisionId: Type.String() });
