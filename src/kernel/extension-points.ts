import type { TSchema } from '@sinclair/typebox';
import type { CompiledStrategy, Features, Pipeline } from '@apportion/sdk/engine';
import type { ControlView } from '../control/view.js';
import type { DecisionRecord } from './decision.js';
import type { OutcomeJob } from './outcome.js';

/**
 * The extension points domains implement and the allocation and outcome paths call. A domain contributes them
 * through its ModuleParts (src/kernel/core.ts); none of them names the domain that implements it.
 */

/** Request features, a strategy's input and output, a compiled strategy, a route and a router: the engine's types (shared with local mode). */
export type { AllocationInput, AllocationOutput, CompiledStrategy, Features, Route, Router } from '@apportion/sdk/engine';

/**
 * Runs beside every allocation without affecting it (e.g. a learned strategy in shadow mode): returns
 * fields to log in the decision record under `shadow.<name>`, or undefined. A throw is logged and ignored.
 */
export interface ShadowHook {
  readonly name: string;
  observe(
    view: ControlView,
    pipeline: Pipeline,
    input: { readonly features: Features; readonly totalTokens: number; readonly unitKey?: string; readonly maxCostUsd?: number },
    served: { readonly strategy: string; readonly budgets: Readonly<Record<string, number>>; readonly models?: Readonly<Record<string, string>> },
  ): Readonly<Record<string, unknown>> | undefined;
}

/**
 * An arm is a bucket of statistics an outcome counts towards: always its strategy; rollout experiments
 * add their variant. Arms of a decision must live in its pipeline's slot (one Lua call updates all).
 */
export interface Arm {
  readonly summary: string;
  readonly agents: string;
  /**
   * The arm's object may have been deleted since the decision (a strategy): `key` (in the decision's pipeline slot)
   * holds the highest deleted version of it, and the arm is left alone when that is at least `version`, the
   * version the decision was made with, so a late outcome neither brings the deleted statistics back nor feeds an
   * object re-created under the id.
   */
  readonly retired?: { readonly key: string; readonly version: number };
  /**
   * Unit statistics (an experiment arm; src/feedback/units.ts): the phase's unit bitmap (shared by the phase's arms)
   * and the arm's unit-bucket hash, both in the decision's pipeline slot. Written only for a decision with a unit key.
   */
  readonly units?: { readonly bitmap: string; readonly buckets: string };
}

export type ArmResolver = (decision: DecisionRecord) => readonly Arm[];

/** A list that receives one entry per applied outcome, in the same atomic step (e.g. a training buffer). */
export interface OutcomeSink {
  /** Returns the list key (in the decision's pipeline slot) and the entry, or undefined to skip. */
  entry(job: OutcomeJob, ctx: { readonly costUsd: number | undefined }): { key: string; value: string } | undefined;
}

export interface StrategyKindContext {
  readonly pipeline: Pipeline;
  readonly strategyId: string;
}

/**
 * One kind of strategy (uniform, static, …). `params` is validated against `paramsSchema`, then by
 * `check` against the pipeline (e.g. unknown agent names): both report problems as AppError.
 */
export interface StrategyKind<P = unknown> {
  readonly kind: string;
  readonly paramsSchema: TSchema;
  check?(params: P, pipeline: Pipeline): void;
  compile(params: P, ctx: StrategyKindContext): CompiledStrategy;
}

/** Strategy kinds by name: the built-in ones (src/strategies/registry.ts) and those modules add at start-up. */
export class StrategyKinds {
  private readonly kinds = new Map<string, StrategyKind<never>>();

  constructor(initial: readonly StrategyKind<never>[] = []) {
    for (const k of initial) this.register(k);
  }

  register<P>(kind: StrategyKind<P>): void {
    this.kinds.set(kind.kind, kind as unknown as StrategyKind<never>);
  }

  get(kind: string): StrategyKind<unknown> | undefined {
    return this.kinds.get(kind) as StrategyKind<unknown> | undefined;
  }

  names(): string[] {
    return [...this.kinds.keys()];
  }
}
