import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyKinds } from '../strategies/registry.js';
import type { StrategyDef } from '../strategies/schema.js';
import { builtinUniform, compiledStrategy } from '../strategies/service.js';
import type { AllocationInput } from '../strategies/types.js';
import { GUARD_DEFAULTS } from './guard.js';
import type { ModelDoc } from './registry.js';

/**
 * The runtime guard's control arm (docs/learner.md, "Runtime guard"): a share of a learned strategy's
 * decisions, drawn per decision, is served by the pipeline's default strategy, so the learned arm's realised
 * reward can be compared with a concurrent control. Logged in `meta.learner.x`.
 */
export interface ControlMeta {
  /** Share of decisions the control serves (1 while the guard has reverted to control). */
  readonly s: number;
  /** 1 when this decision was served by the control. */
  readonly a: 0 | 1;
  /** The control's split for this request (pipeline agent order): logged on every decision, so the logging
   * policy's whole action distribution is known whichever arm served. */
  readonly b: number[];
  /** The control strategy's id. */
  readonly c: string;
}

/**
 * The control strategy: the pipeline's default strategy when it is not itself learned, else the built-in
 * uniform split.
 */
export function controlStrategyDef(view: ControlView, pipeline: Pipeline): StrategyDef {
  const d = pipeline.defaultStrategy ? view.strategies.get(pipeline.defaultStrategy) : undefined;
  return d && d.kind !== 'learned' && d.pipeline === pipeline.id ? d : builtinUniform(pipeline);
}

/** Whether the guard has taken every model out of service on this pipeline (the control then serves all). */
export function revertedToControl(view: ControlView, pipeline: Pipeline): boolean {
  const doc = view.raw.kinds.models.get(pipeline.id)?.doc as ModelDoc | undefined;
  return doc?.guard?.toControl === true;
}

/** The share of decisions the control serves: `controlShare` (default 5 %), or all while reverted to control. */
export function controlShareOf(view: ControlView, pipeline: Pipeline, controlShare: number | undefined): number {
  return revertedToControl(view, pipeline) ? 1 : (controlShare ?? GUARD_DEFAULTS.controlShare);
}

/**
 * The control's part of one decision: its split and whether it serves (u uniform in [0, 1)). Undefined when
 * the share is 0 or the control cannot allocate this request (the learned arm then serves it).
 */
export function controlArm(kinds: StrategyKinds, view: ControlView, pipeline: Pipeline, input: AllocationInput, share: number, u: number): ControlMeta | undefined {
  if (!(share > 0)) return undefined;
  const def = controlStrategyDef(view, pipeline);
  try {
    const out = compiledStrategy(kinds, view, def, pipeline).allocate({ features: input.features, totalTokens: input.totalTokens });
    const b = pipeline.agents.map((a) => out.budgets[a.name]!);
    if (b.some((v) => !Number.isInteger(v))) return undefined;
    return { s: share, a: u < share ? 1 : 0, b, c: def.id };
  } catch {
    return undefined;
  }
}
