import { Type, type Static } from '@sinclair/typebox';
import { AppError } from '../errors/app-error.js';
import { compileStatic } from '@apportion/sdk/engine';
import type { StrategyKind } from './types.js';
import { checkAgentNames } from './util.js';

export const StaticParams = Type.Object(
  {
    shares: Type.Record(Type.String(), Type.Number({ minimum: 0 }), {
      description: 'Relative share per agent (normalised). Agents not listed get their minimum.',
    }),
  },
  { additionalProperties: false },
);
export type StaticParams = Static<typeof StaticParams>;

/** Fixed per-agent shares of the total, within min/max. */
export const staticKind: StrategyKind<StaticParams> = {
  kind: 'static',
  paramsSchema: StaticParams,
  check(params, pipeline) {
    checkAgentNames(pipeline, Object.keys(params.shares), 'body/params/shares');
    if (!Object.values(params.shares).some((v) => v > 0)) {
      throw new AppError('INVALID_STRATEGY_PARAMS', 'body/params/shares: at least one share must be positive');
    }
  },
  compile: (params, { pipeline }) => compileStatic(params, pipeline),
};
