import { Value } from '@sinclair/typebox/value';
import { AppError } from '../errors/app-error.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyKinds } from './registry.js';
import type { StrategyBody } from './schema.js';

/** Validates a strategy definition against its kind and pipeline; throws AppError naming the field. */
export function validateStrategy(kinds: StrategyKinds, body: StrategyBody, pipeline: Pipeline): void {
  const kind = kinds.get(body.kind);
  if (!kind) {
    throw new AppError('VALIDATION_FAILED', `body/kind must be one of ${kinds.names().join(', ')}, got "${body.kind}"`);
  }
  const params = body.params ?? {};
  const err = Value.Errors(kind.paramsSchema, params).First();
  if (err) {
    throw new AppError('INVALID_STRATEGY_PARAMS', `body/params${err.path}: ${err.message} (kind ${body.kind})`);
  }
  kind.check?.(params, pipeline);
}

/** Compiled strategies memoised per control view, and the built-in uniform strategy: the engine's. */
export { builtinUniform, compiledStrategy } from '@apportion/sdk/engine';
