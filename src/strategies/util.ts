import { AppError } from '../errors/app-error.js';
import type { Pipeline } from '../pipelines/schema.js';

export { toBudgets } from '@apportion/sdk/engine';

/** Rejects parameter maps that name agents the pipeline does not have. */
export function checkAgentNames(pipeline: Pipeline, names: Iterable<string>, field: string): void {
  const known = new Set(pipeline.agents.map((a) => a.name));
  for (const n of names) {
    if (!known.has(n)) throw new AppError('UNKNOWN_AGENT', `${field}/${n}: pipeline ${pipeline.id} has no agent "${n}"`);
  }
}
