import type { TSchema } from '@sinclair/typebox';
import type { Pipeline } from '../pipelines/schema.js';

/** Request features: numbers, strings or booleans. A string feature named `<x>Text` is tokenized into `<x>Tokens`. */
export type Features = Readonly<Record<string, string | number | boolean | null>>;

export interface AllocationInput {
  readonly features: Features;
  readonly totalTokens: number;
  readonly unitKey?: string;
  /** The id the decision will be recorded under (set by the allocation service; absent in offline evaluation). */
  readonly decisionId?: string;
}

export interface AllocationOutput {
  /** Integer budgets per agent; their sum never exceeds the total. */
  readonly budgets: Readonly<Record<string, number>>;
  /** Extra fields logged in the decision record (e.g. a learned policy's propensity). */
  readonly meta?: Readonly<Record<string, unknown>>;
}

/** A strategy compiled for one pipeline version and one parameter set: a pure function of its input. */
export interface CompiledStrategy {
  allocate(input: AllocationInput): AllocationOutput;
}

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
