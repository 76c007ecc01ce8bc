import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyDef } from '../strategies/schema.js';
import type { LearnedParams } from './kind.js';

/**
 * Which strategies of a pipeline are learned, read from the control view. Its own module because the logging hooks
 * (hooks.ts), training (training.ts), the guard monitor and the routes all ask it, and training uses the hooks'
 * logging policy: kept in training.ts, hooks.ts and training.ts would import each other.
 */

/** The learned strategies of a pipeline; the first is the one whose parameters drive training. */
export function learnedStrategies(view: ControlView, pipeline: Pipeline): readonly StrategyDef[] {
  // Memoised per control view: the shadow hook asks on every allocation of every pipeline.
  return view.memo(`learner:strategies:${pipeline.id}:${pipeline.version}`, () => {
    const all = [...view.strategies.values()].filter((s) => s.pipeline === pipeline.id && s.kind === 'learned').sort((a, b) => a.id.localeCompare(b.id));
    const dflt = all.findIndex((s) => s.id === pipeline.defaultStrategy);
    if (dflt > 0) all.unshift(...all.splice(dflt, 1));
    return all;
  });
}

export function trainingParams(view: ControlView, pipeline: Pipeline): LearnedParams | undefined {
  const s = learnedStrategies(view, pipeline)[0];
  return s ? (s.params as LearnedParams) : undefined;
}
