import { Value } from '@sinclair/typebox/value';
import type { Versioned } from '../control/store.js';
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

/**
 * What another domain may know of a stored strategy document, read from a fresh control-plane read (not the
 * snapshot). The strategies domain owns the document's shape: rollout asks this, never the raw document.
 */
export interface StrategyRef {
  readonly id: string;
  readonly version: number;
  /** The pipeline it belongs to (undefined when the stored document names none). */
  readonly pipeline: string | undefined;
  readonly kind: string;
  readonly params: Readonly<Record<string, unknown>>;
}

/** Reads a stored strategy document (as the strategies routes and the rollout domain wrote it). */
export function strategyRef(v: Versioned<Record<string, unknown>>): StrategyRef {
  const { pipeline, kind, params } = v.doc;
  return {
    id: v.id,
    version: v.version,
    pipeline: typeof pipeline === 'string' ? pipeline : undefined,
    kind: String(kind),
    params: typeof params === 'object' && params !== null ? (params as Record<string, unknown>) : {},
  };
}
