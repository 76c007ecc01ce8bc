import type { ShadowHook } from '../allocation/service.js';
import type { ControlView } from '../control/view.js';
import type { OutcomeSink } from '../feedback/processor.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { Keys } from '../redis/keys.js';
import type { StrategyKinds } from '../strategies/registry.js';
import { compiledStrategy } from '../strategies/service.js';
import type { LoggedEvent } from './events.js';
import { isLearned, learnerMetaOf, pendingTicketOf, waitWindowMs, type LearnedParams } from './kind.js';
import { learnerKeys } from './keys.js';
import { shareDistance } from './ope-service.js';
import { learnedStrategies } from './training.js';

/** Pipelines whose outcomes are logged for learning and evaluation: those with a learned strategy or a feature declaration. */
export function logsPipeline(view: ControlView, pipeline: Pipeline): boolean {
  return view.raw.kinds.features.has(pipeline.id) || learnedStrategies(view, pipeline).length > 0;
}

/**
 * The training-buffer sink: one event per applied outcome, pushed (with the learner's ticket, if any) onto
 * the pipeline's incoming list in the same Lua call that applies the outcome, so it is logged exactly once.
 * An outcome received after its decision's wait window is left out (the default reward stands in for it).
 */
export function trainingSink(deps: { readonly view: () => ControlView; readonly keys: Keys; readonly retentionSeconds: number }): OutcomeSink {
  return {
    entry(job, { costUsd }) {
      const d = job.decision;
      const view = deps.view();
      const pipeline = view.pipelines.get(d.pipeline);
      if (!pipeline || !logsPipeline(view, pipeline)) return undefined;
      const meta = learnerMetaOf(d, pipeline);
      const tk = pendingTicketOf(d.meta, d.id);
      if (tk) {
        const params = (view.strategies.get(d.strategy)?.params ?? {}) as LearnedParams;
        const waitMs = waitWindowMs(params, deps.retentionSeconds);
        if (waitMs > 0 && job.receivedAt > d.ts + waitMs) return undefined;
      }
      const shadow = d.shadow?.learner as Record<string, { b?: number[] }> | undefined;
      let sh: Record<string, number[]> | undefined;
      for (const [id, s] of Object.entries(shadow ?? {})) if (Array.isArray(s.b)) (sh ??= {})[id] = s.b;
      const ev: LoggedEvent = {
        id: d.id,
        t: d.ts,
        s: d.strategy,
        f: d.features,
        T: d.totalTokens,
        b: d.budgets,
        q: job.outcome.quality,
        c: costUsd ?? null,
        ...(meta ? { C: meta.C, P: meta.P, k: meta.k, m: meta.m } : {}),
        ...(sh ? { sh } : {}),
      };
      return { key: learnerKeys(deps.keys, d.pipeline).incoming, value: `${tk}|${JSON.stringify(ev)}` };
    },
  };
}

/**
 * Shadow mode: every learned strategy with `shadow: true` computes its greedy split beside each allocation
 * of its pipeline (while another strategy serves) and logs it with its agreement with the served split and
 * both splits' predicted reward.
 */
export function shadowHook(deps: { readonly kinds: StrategyKinds }): ShadowHook {
  return {
    name: 'learner',
    observe(view, pipeline, input, served) {
      let out: Record<string, unknown> | undefined;
      for (const def of learnedStrategies(view, pipeline)) {
        if (def.id === served.strategy || (def.params as LearnedParams).shadow !== true) continue;
        const c = compiledStrategy(deps.kinds, view, def, pipeline);
        if (!isLearned(c)) continue;
        const b = c.greedy(input);
        const servedVec = pipeline.agents.map((a) => served.budgets[a.name] ?? 0);
        (out ??= {})[def.id] = {
          b,
          agreement: 1 - shareDistance(b, servedVec, input.totalTokens),
          predicted: c.predict(input, b),
          servedPredicted: c.predict(input, servedVec),
        };
      }
      return out;
    },
  };
}
