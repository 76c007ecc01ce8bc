import { Type, type Static } from '@sinclair/typebox';
import { Id } from '../pipelines/schema.js';

export const StrategyBody = Type.Object(
  {
    pipeline: Id,
    kind: Type.String({ minLength: 1, maxLength: 64, description: 'uniform | static | estimate | priority-pool | learned' }),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export type StrategyBody = Static<typeof StrategyBody>;

export type { StrategyDef } from '@apportion/sdk/engine';

export const StrategyResponse = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  pipeline: Type.String(),
  kind: Type.String(),
  params: Type.Record(Type.String(), Type.Unknown()),
  description: Type.Optional(Type.String()),
});

/** Id of the built-in uniform strategy every pipeline falls back to; `@` keeps it apart from user ids. */
export { BUILTIN_UNIFORM_ID } from '@apportion/sdk/engine';
