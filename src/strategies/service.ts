import { Value } from '@sinclair/typebox/value';
import { AppError } from '../errors/app-error.js';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyKinds } from './registry.js';
import { BUILTIN_UNIFORM_ID, type StrategyBody, type StrategyDef } from './schema.js';
import type { CompiledStrategy } from './types.js';

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

/**
 * Compiles strategies for a control view, memoised in the view (so recompiled only when config changes).
 * Returns undefined when the strategy cannot be compiled for this pipeline (the caller falls back).
 */
export function compiledStrategy(kinds: StrategyKinds, view: ControlView, def: StrategyDef, pipeline: Pipeline): CompiledStrategy {
  return view.memo(`strategy:${def.id}:${def.version}:${pipeline.version}`, () => {
    const kind = kinds.get(def.kind);
    if (!kind) throw new Error(`strategy kind ${def.kind} is not registered in this process`);
    kind.check?.(def.params, pipeline);
    return kind.compile(def.params, { pipeline, strategyId: def.id });
  });
}

/** The built-in uniform strategy of a pipeline. */
export function builtinUniform(pipeline: Pipeline): StrategyDef {
  return { id: BUILTIN_UNIFORM_ID, version: 0, pipeline: pipeline.id, kind: 'uniform', params: {} };
}
