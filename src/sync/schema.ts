import { Type, type Static } from '@sinclair/typebox';
import { FeatureValue } from '../allocation/schema.js';
import { DECISION_ID_PATTERN } from '../kernel/decision.js';
import { Id } from '../pipelines/schema.js';

const Obj = Type.Record(Type.String(), Type.Unknown());

/** One decision record as an SDK made it (the server's DecisionRecord fields). */
export const IngestItem = Type.Object(
  {
    id: Type.String({ pattern: DECISION_ID_PATTERN }),
    pipeline: Id,
    pipelineVersion: Type.Integer({ minimum: 0 }),
    strategy: Type.String({ minLength: 1, maxLength: 128 }),
    strategyVersion: Type.Integer({ minimum: 0 }),
    strategyKind: Type.String({ minLength: 1, maxLength: 64 }),
    reason: Type.Union(['requested', 'experiment', 'holdout', 'default', 'fallback'].map((r) => Type.Literal(r))),
    budgets: Type.Record(Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 })),
    totalTokens: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    features: Type.Record(Type.String({ maxLength: 128 }), FeatureValue),
    unitKey: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    ts: Type.Integer({ minimum: 0 }),
    route: Type.Optional(Obj),
    meta: Type.Optional(Obj),
    routing: Type.Optional(
      Type.Object({
        q: Type.Number({ minimum: 0, maximum: 1 }),
        alt: Type.Array(Type.Object({ s: Type.String(), q: Type.Number(), b: Type.Array(Type.Number()), l: Type.Optional(Obj), m: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Null()]))) }), { maxItems: 1000 }),
      }),
    ),
    // What shadow strategies would have done (the engine's learnedShadow, as the server's shadow hook logs it).
    shadow: Type.Optional(Obj),
    // Model tiers: the model served per agent and the request's cost ceiling.
    models: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ minLength: 1, maxLength: 128 }))),
    maxCostUsd: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type IngestItem = Static<typeof IngestItem>;

export const IngestBody = Type.Object({ decisions: Type.Array(IngestItem, { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false });
