import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { compileProbeCut } from '@apportion/sdk/engine';
import { AppError } from '../errors/app-error.js';
import type { StrategyKinds } from '../kernel/extension-points.js';
import type { StrategyKind } from '../strategies/types.js';

export const ProbeCutParams = Type.Object(
  {
    agent: Type.String({ minLength: 1, maxLength: 64 }),
    fraction: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
    base: Type.Object({ id: Type.String(), kind: Type.String(), params: Type.Record(Type.String(), Type.Unknown()) }),
  },
  { additionalProperties: false },
);
export type ProbeCutParams = Static<typeof ProbeCutParams>;

/**
 * The critical-path probe's arm: the base strategy's allocation with one agent cut to `fraction` of its budget
 * (compileProbeCut in `@apportion/sdk/engine`, which the SDK's local mode serves too). The base strategy's kind
 * and params are frozen into the arm when the probe is created, so a later change of the pipeline default does
 * not change what the arm measures.
 */
export function probeCutKind(kinds: StrategyKinds): StrategyKind<ProbeCutParams> {
  return {
    kind: 'probe-cut',
    paramsSchema: ProbeCutParams,
    check(params, pipeline) {
      if (!pipeline.agents.some((a) => a.name === params.agent)) {
        throw new AppError('UNKNOWN_AGENT', `body/params/agent: pipeline "${pipeline.id}" has no agent "${params.agent}"`);
      }
      const base = kinds.get(params.base.kind);
      if (!base || params.base.kind === 'probe-cut') throw new AppError('INVALID_STRATEGY_PARAMS', `body/params/base/kind: "${params.base.kind}" cannot be probed`);
      const err = Value.Errors(base.paramsSchema, params.base.params).First();
      if (err) throw new AppError('INVALID_STRATEGY_PARAMS', `body/params/base/params${err.path}: ${err.message}`);
      base.check?.(params.base.params, pipeline);
    },
    compile: (params, ctx) => compileProbeCut(params, ctx.pipeline, kinds),
  };
}
