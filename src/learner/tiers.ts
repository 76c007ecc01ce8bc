import { hasTiers } from '@apportion/sdk/engine';
import type { DecisionRecord } from '../allocation/decisions.js';
import type { Pipeline } from '../pipelines/schema.js';

/**
 * Model tiers in the learner's log (pure). On a pipeline whose agents declare candidate models an action is a
 * budget vector AND a model per agent: two decisions with the same budgets on different models are different
 * actions. The logging policy's distribution is mixed over (budgets, models) keys: each budget vector is
 * extended with the index of every agent's model in its `models` (−1 for an agent without one), mixed as
 * usual, and split again into `C` (budgets) and `CM` (models, parallel to C).
 */

/** Model index per agent (−1: none or unknown), from models by agent name or in agent order. */
export function modelKey(pipeline: Pipeline, models: Readonly<Record<string, string>> | readonly (string | null)[] | undefined): number[] {
  return pipeline.agents.map((a, i) => {
    const m = Array.isArray(models) ? (models as readonly (string | null)[])[i] : (models as Readonly<Record<string, string>> | undefined)?.[a.name];
    if (typeof m !== 'string' || !a.models) return -1;
    return a.models.findIndex((x) => x.model === m);
  });
}

/** The model names of a key (agent order; null where an agent has no model). */
export function modelsOfKey(pipeline: Pipeline, key: readonly number[]): (string | null)[] {
  return pipeline.agents.map((a, i) => (key[i]! >= 0 ? (a.models?.[key[i]!]?.model ?? null) : null));
}

/** The models a decision served, in agent order (undefined when the pipeline has no model tiers or the record none). */
export function servedModels(d: Pick<DecisionRecord, 'models'>, pipeline: Pipeline): (string | null)[] | undefined {
  if (!d.models || !hasTiers(pipeline)) return undefined;
  return pipeline.agents.map((a) => d.models![a.name] ?? null);
}

/** Extends a budget vector with a model key (see the module comment). */
export const keyed = (b: readonly number[], key: readonly number[]): number[] => [...b, ...key];

/** Splits keyed vectors back into budgets and models. */
export function unkey(pipeline: Pipeline, C: readonly (readonly number[])[]): { C: number[][]; CM: (string | null)[][] } {
  const n = pipeline.agents.length;
  return { C: C.map((c) => c.slice(0, n)), CM: C.map((c) => modelsOfKey(pipeline, c.slice(n))) };
}
