import { AppError } from '../errors/app-error.js';
import type { Pipeline, PipelineBody } from './schema.js';

/** Semantic checks the schema cannot express. Throws AppError naming the field. */
export function validatePipelineBody(body: PipelineBody): void {
  const seen = new Set<string>();
  let minSum = 0;
  body.agents.forEach((a, i) => {
    if (seen.has(a.name)) throw new AppError('DUPLICATE_AGENT', `body/agents/${i}/name: agent "${a.name}" appears twice`);
    seen.add(a.name);
    const min = a.minTokens ?? 0;
    if (a.maxTokens !== undefined && min > a.maxTokens) {
      throw new AppError('INVALID_AGENT_RANGE', `body/agents/${i}/minTokens (${min}) exceeds body/agents/${i}/maxTokens (${a.maxTokens})`);
    }
    minSum += min;
  });
  if (minSum > body.defaultTotalTokens) {
    throw new AppError('INFEASIBLE_TOTAL', `body/defaultTotalTokens (${body.defaultTotalTokens}) is below the sum of minTokens (${minSum})`);
  }
}

/** A stored pipeline document with defaults applied (the engine's, so local mode reads pipelines identically). */
export { toPipeline } from '@apportion/sdk/engine';

export function pipelineView(p: Pipeline): Record<string, unknown> {
  return {
    id: p.id,
    version: p.version,
    agents: p.agents.map((a) => ({
      name: a.name,
      ...(a.model !== undefined ? { model: a.model } : {}),
      priority: a.priority,
      minTokens: a.minTokens,
      ...(a.maxTokens !== undefined ? { maxTokens: a.maxTokens } : {}),
      ...(a.price ? { price: a.price } : {}),
      ...(a.models ? { models: a.models.map((m) => ({ model: m.model, ...(m.provider !== undefined ? { provider: m.provider } : {}), price: m.price })) } : {}),
    })),
    defaultTotalTokens: p.defaultTotalTokens,
    ...(p.defaultStrategy !== undefined ? { defaultStrategy: p.defaultStrategy } : {}),
    ...(p.description !== undefined ? { description: p.description } : {}),
  };
}
