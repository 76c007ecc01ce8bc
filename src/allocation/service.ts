import { allocationResultOf, decide, type Features, decisionRecordOf, EngineError, type AllocationRequest as EngineRequest, type EngineDecision, type EngineResult as AllocationResult, type Router } from '@apportion/sdk/engine';
import { AppError } from '../errors/app-error.js';
import type { ControlView } from '../control/view.js';
import type { ShadowHook, StrategyKinds } from '../kernel/extension-points.js';
import { decisionSecond, newDecisionId, type DecisionStore } from './decisions.js';

/** Why a strategy served, a request, a route and a router: the engine's types (shared with local mode). */
export type { AllocationReason, Route, Router } from '@apportion/sdk/engine';

export interface AllocationRequest extends EngineRequest {
  /**
   * The id to record the decision under (default: a new one). A learned strategy's draws are seeded by it, so
   * the same id gets the same answer here and in the SDK's local mode.
   */
  readonly decisionId?: string;
}

/** Runs beside every allocation without affecting it: an extension point (src/kernel/extension-points.ts). */
export type { ShadowHook } from '../kernel/extension-points.js';

/** The answer of POST /v1/allocations: the engine's (`@apportion/sdk/engine`), as local mode answers too. */
export type { EngineResult as AllocationResult } from '@apportion/sdk/engine';

export interface AllocationObserver {
  onAllocation?(result: AllocationResult): void;
  onStrategyError?(strategyId: string, err: unknown): void;
  onRecordError?(err: unknown): void;
  /** The decision's record write settled: written (`recorded`), or given up on (the answer says `recorded: false`). */
  onRecorded?(decisionId: string, recorded: boolean): void;
}

/**
 * The hot path: resolve the route → strategy → budgets, write the decision record. Reads the control
 * plane from the in-memory view only. Never fails a request because a strategy threw: it falls back to
 * the pipeline default, then the built-in uniform, and says so in `reason` and `fallback`.
 */
export class AllocationService {
  constructor(
    private readonly deps: {
      readonly view: () => ControlView;
      readonly kinds: StrategyKinds;
      readonly decisions: DecisionStore;
      /** Routers consulted in order before the pipeline default (resolved lazily: modules register them). */
      readonly routers?: () => readonly Router[];
      readonly shadows?: () => readonly ShadowHook[];
      readonly observer?: AllocationObserver;
      /**
       * Resolves once a request's `<x>Text` features can be tokenized (undefined when they can be at once): the
       * strategies domain's tokenizerFor, which loads the encoder on the first request that needs it.
       */
      readonly tokenizer?: (features: Features | undefined) => Promise<void> | undefined;
    },
  ) {}

  async allocate(req: AllocationRequest): Promise<AllocationResult> {
    // A `<x>Text` feature is tokenized by the engine: the encoder loads on the first such request (src/strategies/tokens.ts).
    const tokenizer = this.deps.tokenizer?.(req.features);
    if (tokenizer) await tokenizer;
    const view = this.deps.view();
    const id = req.decisionId ?? newDecisionId();
    if (req.decisionId !== undefined) {
      if (decisionSecond(id) === undefined) throw new AppError('VALIDATION_FAILED', `body/decisionId: "${id}" has no plausible time prefix (<epoch second base 36>-…)`);
      // Never overwrite a recorded decision (its outcome may already have joined it).
      if (await this.deps.decisions.read(id)) throw new AppError('ID_TAKEN', `body/decisionId: "${id}" is already recorded`);
    }
    let d: EngineDecision;
    try {
      d = decide(
        { kinds: this.deps.kinds, routers: this.deps.routers?.() ?? [], ...(this.deps.observer?.onStrategyError ? { onStrategyError: this.deps.observer.onStrategyError } : {}) },
        view,
        req,
        id,
      );
    } catch (e) {
      if (e instanceof EngineError) throw new AppError(e.code, e.message);
      throw e;
    }
    return this.finish(id, d, req);
  }

  private async finish(id: string, d: EngineDecision, req: AllocationRequest): Promise<AllocationResult> {
    const { pipeline, def, budgets, totalTokens: total, features } = d;
    let shadow: Record<string, unknown> | undefined;
    for (const hook of this.deps.shadows?.() ?? []) {
      try {
        const o = hook.observe(
          this.deps.view(),
          pipeline,
          { features, totalTokens: total, ...(req.unitKey !== undefined ? { unitKey: req.unitKey } : {}), ...(d.maxCostUsd !== undefined ? { maxCostUsd: d.maxCostUsd } : {}) },
          { strategy: def.id, budgets, ...(d.tiers?.models ? { models: d.tiers.models } : {}) },
        );
        if (o) (shadow ??= {})[hook.name] = o;
      } catch (e) {
        this.deps.observer?.onStrategyError?.(`shadow:${hook.name}`, e);
      }
    }
    const record = decisionRecordOf(id, d, req.unitKey, Date.now(), shadow);
    let recorded = true;
    try {
      // A decision id the client chose is written only if no decision holds it: two allocations racing for one id
      // (both past the read above) must not leave the second's record under the first's answer.
      if ((await this.deps.decisions.write(record, { nx: req.decisionId !== undefined })) === 'taken') {
        // Not reported as settled: the id's registrations belong to the decision that holds it.
        throw new AppError('ID_TAKEN', `body/decisionId: "${id}" is already recorded`);
      }
    } catch (e) {
      if (e instanceof AppError) throw e;
      recorded = false;
      this.deps.observer?.onRecordError?.(e);
    }
    this.deps.observer?.onRecorded?.(id, recorded);
    const result = allocationResultOf(id, d, recorded);
    this.deps.observer?.onAllocation?.(result);
    return result;
  }
}

/** The decision record and the answer of an engine decision (the engine's: local mode builds them alike). */
export { allocationResultOf, decisionRecordOf } from '@apportion/sdk/engine';

/** Guards every strategy's output (the engine's). */
export { checkBudgets } from '@apportion/sdk/engine';
