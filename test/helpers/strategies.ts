import { toPipeline } from '../../src/pipelines/model.js';
import type { PipelineBody } from '../../src/pipelines/schema.js';
import { StrategyKinds } from '../../src/strategies/registry.js';
import type { Features } from '../../src/strategies/types.js';

const kinds = new StrategyKinds();

/** Runs one built-in strategy kind, purely, the way the allocation service does. */
export function runStrategy(
  kind: string,
  agents: PipelineBody['agents'],
  params: Record<string, unknown>,
  features: Features,
  total: number,
): Record<string, number> {
  const pipeline = toPipeline({ id: 'p', version: 1, doc: { agents, defaultTotalTokens: total } });
  const k = kinds.get(kind);
  if (!k) throw new Error(`no kind ${kind}`);
  k.check?.(params, pipeline);
  return { ...k.compile(params, { pipeline, strategyId: 's' }).allocate({ features, totalTokens: total }).budgets };
}
