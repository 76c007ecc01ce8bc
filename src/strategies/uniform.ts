import { Type } from '@sinclair/typebox';
import { compileUniform } from '@apportion/sdk/engine';
import type { StrategyKind } from './types.js';

/** Equal shares of the total, within each agent's min/max. The baseline every other strategy is judged against. */
export const uniformKind: StrategyKind<Record<string, never>> = {
  kind: 'uniform',
  paramsSchema: Type.Object({}, { additionalProperties: false }),
  compile: (_params, { pipeline }) => compileUniform(pipeline),
};
