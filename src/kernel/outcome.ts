import { Type, type Static } from '@sinclair/typebox';
import { DECISION_ID_PATTERN, type DecisionRecord } from './decision.js';

/** What a client reports about one decision (POST /v1/outcomes): the shared document the worker and every outcome sink read. */
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

/** One accepted outcome, with its decision record, as the worker applies it. */
export interface OutcomeJob {
  readonly decision: DecisionRecord;
  readonly outcome: OutcomeBody;
  readonly receivedAt: number;
  /**
   * Whether this outcome is its decision's learner event (its receipt, written at intake): false when the learner's
   * default-reward sweep claimed the decision first (it got the default reward; this outcome counts in the statistics
   * only). Absent on jobs queued before receipts existed.
   */
  readonly learner?: boolean;
}
