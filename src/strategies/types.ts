import type { TSchema } from '@sinclair/typebox';
import type { Pipeline } from '../pipelines/schema.js';

/** Request features, a strategy's input and output, a compiled strategy: the engine's types (shared with local mode). */
export type { AllocationInput, AllocationOutput, CompiledStrategy, Features } from '@apportion/sdk/engine';
import type { CompiledStrategy } from '@apportion/sdk/engine';

export interface StrategyKindContext {
  readonly pipeline: Pipeline;
  readonly strategyId: string;
}

/**
 * One kind of strategy (uniform, static, …). `params` is validated against `paramsSchema`, then by
 * `check` against the pipeline (e.g. unknown agent names): both report problems as AppError.
 */
export interface StrategyKind<P = unknown> {
  readonly kind: string;
  readonly paramsSchema: TSchema;
  check?(params: P, pipeline: Pipeline): void;
  compile(params: P, ctx: StrategyKindContext): CompiledStrategy;
}
