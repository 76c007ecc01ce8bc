import { Type } from '@sinclair/typebox';
import { Id } from '../pipelines/schema.js';

export const FeatureValue = Type.Union([Type.String({ maxLength: 1_000_000 }), Type.Number(), Type.Boolean(), Type.Null()]);

/** Most features one request (or one SDK decision record) may carry: every decision record stores them. */
export const MAX_FEATURES = 256;

export const AllocationBody = Type.Object(
  {
    pipeline: Id,
    unitKey: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Sticky bucketing key (user, tenant, conversation…).' })),
    features: Type.Optional(
      Type.Record(Type.String({ maxLength: 128 }), FeatureValue, {
        maxProperties: MAX_FEATURES,
        description: `Request features (at most ${MAX_FEATURES}). A string feature named <x>Text is tokenized (o200k_base) into <x>Tokens.`,
      }),
    ),
    totalTokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000 })),
    maxCostUsd: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1_000_000,
        description: 'Cost ceiling in USD, with or instead of totalTokens: budgets are trimmed so that their cost on the served models (at a 30 % output share) stays within it. See docs/budgets.md.',
      }),
    ),
    strategy: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Force a strategy (skips experiments).' })),
    decisionId: Type.Optional(
      Type.String({
        pattern: '^[0-9a-z]{6,7}-[A-Za-z0-9_-]{8,56}$',
        description: 'Record the decision under this id (<epoch second base 36>-<random>, made within the reward window). A learned strategy draws from it, so an SDK in local mode gets the same answer for the same id. Default: a new id.',
      }),
    ),
  },
  { additionalProperties: false },
);

export const AllocationResponse = Type.Object({
  decisionId: Type.String(),
  pipeline: Type.String(),
  pipelineVersion: Type.Integer(),
  strategy: Type.String(),
  strategyVersion: Type.Integer(),
  budgets: Type.Record(Type.String(), Type.Object({ tokens: Type.Integer(), model: Type.Optional(Type.String()) })),
  totalTokens: Type.Integer(),
  unallocatedTokens: Type.Integer(),
  maxCostUsd: Type.Optional(Type.Number()),
  costUsd: Type.Optional(Type.Number({ description: 'Planned cost of the budgets on the served models, when every agent is priced.' })),
  reason: Type.String({ description: 'requested | experiment | holdout | default | fallback' }),
  fallback: Type.Optional(Type.Object({ from: Type.String(), error: Type.String() })),
  recorded: Type.Boolean(),
  experiment: Type.Optional(Type.String()),
  variant: Type.Optional(Type.String()),
  route: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});
