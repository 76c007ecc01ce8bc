import { isLearned } from './learned.js';
import { compiledStrategy, type KindLookup } from './strategies.js';
import type { ControlView, Features, Pipeline, StrategyDef } from './types.js';

/**
 * Shadow mode (pure): every learned strategy of a pipeline with `shadow: true` that did not serve the request computes
 * its greedy action beside the allocation, logged in the decision record under `shadow.learner.<strategy>`. The server's
 * shadow hook and the SDK's local mode both call `learnedShadow`, so a decision logs the same shadow either way.
 *
 * On a pipeline where the learned strategy chooses models jointly with tokens (learnsTiers), the shadow action is the
 * joint one: its budgets and its model per agent, as the serving tier version's greedy action (the default strategy's
 * action during the safe start) under the request's token total and cost ceiling; its predicted rewards are the joint
 * reward model's (predicted quality − λ·planned cost).
 */
export interface LearnedShadowEntry {
  /** The shadow strategy's budgets (pipeline agent order). */
  readonly b: number[];
  /** Its model per agent (pipeline order; null for an agent without models): on a pipeline with model tiers. */
  readonly m?: (string | null)[];
  /** 1 − the share of the total the shadow and served splits place differently. */
  readonly agreement: number;
  /** Share of the agents that declare models on which the shadow and the served action name the same model. */
  readonly modelAgreement?: number;
  /** Predicted reward of the shadow action and of the served one (the reward model of the pipeline's serving version). */
  readonly predicted: number;
  readonly servedPredicted?: number;
}

/** The learned strategies of a pipeline that run in shadow (ordered by id). */
function shadowStrategies(view: ControlView, pipeline: Pipeline): readonly StrategyDef[] {
  return view.memo(`shadow:learned:${pipeline.id}:${pipeline.version}`, () =>
    [...view.strategies.values()].filter((s) => s.pipeline === pipeline.id && s.kind === 'learned' && s.params.shadow === true).sort((a, b) => a.id.localeCompare(b.id)),
  );
}

/** 1 − half the L1 distance of two splits as a share of the total. */
export function splitAgreement(a: readonly number[], b: readonly number[], total: number): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  return 1 - d / (2 * Math.max(1, total));
}

/** Share of the agents that declare models on which two actions name the same model (undefined when none declares any). */
export function modelAgreementOf(pipeline: Pipeline, a: readonly (string | null)[], b: readonly (string | null)[]): number | undefined {
  let n = 0;
  let same = 0;
  pipeline.agents.forEach((ag, i) => {
    if (!ag.models || ag.models.length === 0) return;
    n++;
    if ((a[i] ?? null) === (b[i] ?? null)) same++;
  });
  return n > 0 ? same / n : undefined;
}

/** What every shadow learned strategy would have done for one request; undefined when none runs in shadow. */
export function learnedShadow(
  kinds: KindLookup,
  view: ControlView,
  pipeline: Pipeline,
  input: { readonly features: Features; readonly totalTokens: number; readonly maxCostUsd?: number },
  served: { readonly strategy: string; readonly budgets: Readonly<Record<string, number>>; readonly models?: Readonly<Record<string, string>> },
): Record<string, LearnedShadowEntry> | undefined {
  let out: Record<string, LearnedShadowEntry> | undefined;
  const servedVec = pipeline.agents.map((a) => served.budgets[a.name] ?? 0);
  const req = { features: input.features, totalTokens: input.totalTokens, ...(input.maxCostUsd !== undefined ? { maxCostUsd: input.maxCostUsd } : {}) };
  for (const def of shadowStrategies(view, pipeline)) {
    if (def.id === served.strategy) continue;
    const c = compiledStrategy(kinds, view, def, pipeline);
    if (!isLearned(c)) continue;
    if (c.greedyTier && c.predictTier) {
      // The joint action: budgets and models.
      const g = c.greedyTier(req);
      const servedModels = pipeline.agents.map((a) => served.models?.[a.name] ?? null);
      const ma = modelAgreementOf(pipeline, g.models, servedModels);
      const sp = c.predictTier(req, servedVec, servedModels);
      (out ??= {})[def.id] = {
        b: g.budgets,
        m: g.models,
        agreement: splitAgreement(g.budgets, servedVec, input.totalTokens),
        ...(ma !== undefined ? { modelAgreement: ma } : {}),
        predicted: c.predictTier(req, g.budgets, g.models) ?? 0,
        ...(sp !== undefined ? { servedPredicted: sp } : {}),
      };
      continue;
    }
    const b = c.greedy(req);
    (out ??= {})[def.id] = { b, agreement: splitAgreement(b, servedVec, input.totalTokens), predicted: c.predict(req, b), servedPredicted: c.predict(req, servedVec) };
  }
  return out;
}
