import { AppError } from '../errors/app-error.js';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyKinds } from '../strategies/registry.js';
import { BUILTIN_UNIFORM_ID, type StrategyDef } from '../strategies/schema.js';
import { builtinUniform, compiledStrategy } from '../strategies/service.js';
import { deriveTokenFeatures } from '../strategies/tokens.js';
import type { Features } from '../strategies/types.js';
import { newDecisionId, type DecisionRecord, type DecisionRouting, type DecisionStore, type RouteAlternative } from './decisions.js';

/** Why this strategy served the request. */
export type AllocationReason = 'requested' | 'experiment' | 'holdout' | 'default' | 'fallback';

export interface AllocationRequest {
  readonly pipeline: string;
  readonly unitKey?: string;
  readonly features?: Features;
  readonly totalTokens?: number;
  readonly strategy?: string;
}

/** A routing decision: which strategy serves the request, and what to log about why. */
export interface Route {
  readonly strategyId: string;
  readonly reason: AllocationReason;
  /** Logged in the decision record and returned to the caller (e.g. experiment, variant, phase). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * Picks a strategy for a request before the pipeline default applies (e.g. rollout experiments).
 * Returns undefined to pass. Must not throw for ordinary input; a throw is logged and skipped.
 */
export interface Router {
  readonly name: string;
  route(view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }): Route | undefined;
  /**
   * The probability of every strategy this router could have sent the request to (summing to 1, the
   * pipeline default included), or undefined when its routing of this request was not random. Logged so that
   * off-policy evaluation knows the true assignment probability of every decision.
   */
  distribution?(view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }): readonly { readonly strategyId: string; readonly q: number }[] | undefined;
}

/**
 * Runs beside every allocation without affecting it (e.g. a learned strategy in shadow mode): returns
 * fields to log in the decision record under `shadow.<name>`, or undefined. A throw is logged and ignored.
 */
export interface ShadowHook {
  readonly name: string;
  observe(
    view: ControlView,
    pipeline: Pipeline,
    input: { readonly features: Features; readonly totalTokens: number; readonly unitKey?: string },
    served: { readonly strategy: string; readonly budgets: Readonly<Record<string, number>> },
  ): Readonly<Record<string, unknown>> | undefined;
}

export interface AllocationResult {
  readonly decisionId: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly strategy: string;
  readonly strategyVersion: number;
  readonly budgets: Record<string, { tokens: number }>;
  readonly totalTokens: number;
  readonly unallocatedTokens: number;
  readonly reason: AllocationReason;
  /** Set when the routed strategy failed and another served: which one failed and why. */
  readonly fallback?: { readonly from: string; readonly error: string };
  /** False when the decision record could not be written (outcomes for it will be refused). */
  readonly recorded: boolean;
  /** Rollout experiment and variant that routed the request, when one did. */
  readonly experiment?: string;
  readonly variant?: string;
  readonly route?: Readonly<Record<string, unknown>>;
}

export interface AllocationObserver {
  onAllocation?(result: AllocationResult): void;
  onStrategyError?(strategyId: string, err: unknown): void;
  onRecordError?(err: unknown): void;
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
    },
  ) {}

  async allocate(req: AllocationRequest): Promise<AllocationResult> {
    const view = this.deps.view();
    const pipeline = view.pipelines.get(req.pipeline);
    if (!pipeline) throw new AppError('PIPELINE_NOT_FOUND', `body/pipeline: no pipeline "${req.pipeline}"`);
    const total = req.totalTokens ?? pipeline.defaultTotalTokens;
    const minSum = pipeline.agents.reduce((s, a) => s + a.minTokens, 0);
    if (total < minSum) {
      throw new AppError('INFEASIBLE_TOTAL', `body/totalTokens (${total}) is below the sum of the agents' minTokens (${minSum})`);
    }
    const features = deriveTokenFeatures(req.features ?? {});
    const id = newDecisionId();
    const input = { features, totalTokens: total, decisionId: id, ...(req.unitKey !== undefined ? { unitKey: req.unitKey } : {}) };

    const route = this.resolveRoute(view, pipeline, { ...req, features });
    const chain: { def: StrategyDef; reason: AllocationReason }[] = [];
    const routed = route.strategyId === BUILTIN_UNIFORM_ID ? builtinUniform(pipeline) : view.strategies.get(route.strategyId);
    if (routed) chain.push({ def: routed, reason: route.reason });
    const dflt = pipeline.defaultStrategy ? view.strategies.get(pipeline.defaultStrategy) : undefined;
    if (dflt && dflt.pipeline === pipeline.id && dflt.id !== routed?.id) chain.push({ def: dflt, reason: 'fallback' });
    chain.push({ def: builtinUniform(pipeline), reason: 'fallback' });

    let failure: { from: string; error: string } | undefined;
    if (!routed) failure = { from: route.strategyId, error: 'strategy no longer exists' };
    for (const { def, reason } of chain) {
      try {
        const out = compiledStrategy(this.deps.kinds, view, def, pipeline).allocate(input);
        const budgets = checkBudgets(pipeline, out.budgets, total);
        const routing = !failure && route.reason !== 'requested' ? this.routing(view, pipeline, { ...req, features }, def.id, total) : undefined;
        return await this.finish(id, pipeline, def, failure ? 'fallback' : reason, failure, budgets, total, input.features, req, route, out.meta, routing);
      } catch (e) {
        this.deps.observer?.onStrategyError?.(def.id, e);
        failure ??= { from: def.id, error: e instanceof Error ? e.message : String(e) };
      }
    }
    // Unreachable in practice: uniform only fails on an infeasible total, which was rejected above.
    throw new AppError('INTERNAL', 'no strategy could allocate this request');
  }

  private resolveRoute(view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }): Route {
    if (req.strategy !== undefined) {
      const def = view.strategies.get(req.strategy);
      if (!def && req.strategy !== BUILTIN_UNIFORM_ID) {
        throw new AppError('STRATEGY_NOT_FOUND', `body/strategy: no strategy "${req.strategy}"`);
      }
      if (def && def.pipeline !== pipeline.id) {
        throw new AppError('STRATEGY_PIPELINE_MISMATCH', `body/strategy: strategy "${def.id}" belongs to pipeline "${def.pipeline}"`);
      }
      return { strategyId: req.strategy, reason: 'requested' };
    }
    for (const router of this.deps.routers?.() ?? []) {
      try {
        const r = router.route(view, pipeline, req);
        if (r) return r;
      } catch (e) {
        this.deps.observer?.onStrategyError?.(`router:${router.name}`, e);
      }
    }
    return { strategyId: pipeline.defaultStrategy ?? BUILTIN_UNIFORM_ID, reason: 'default' };
  }

  /**
   * The routing stage's propensities (see DecisionRouting): asked of the routers; for each other strategy the
   * request could have gone to, what it would have done (no decision id: a learned strategy registers
   * nothing). Only requests with random routing pay for this. A strategy that cannot allocate is left out.
   */
  private routing(view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }, served: string, total: number): DecisionRouting | undefined {
    for (const router of this.deps.routers?.() ?? []) {
      let dist: readonly { readonly strategyId: string; readonly q: number }[] | undefined;
      try {
        dist = router.distribution?.(view, pipeline, req);
      } catch (e) {
        this.deps.observer?.onStrategyError?.(`router:${router.name}`, e);
      }
      if (!dist) continue;
      const q = dist.find((o) => o.strategyId === served)?.q;
      if (q === undefined) return undefined; // served by a route the router does not know: no claim
      const alt: RouteAlternative[] = [];
      for (const o of dist) {
        if (o.strategyId === served) continue;
        const def = o.strategyId === BUILTIN_UNIFORM_ID ? builtinUniform(pipeline) : view.strategies.get(o.strategyId);
        if (!def) continue;
        try {
          const out = compiledStrategy(this.deps.kinds, view, def, pipeline).allocate({ features: req.features, totalTokens: total });
          const b = pipeline.agents.map((a) => out.budgets[a.name] ?? 0);
          const l = out.meta?.learner as Readonly<Record<string, unknown>> | undefined;
          alt.push({ s: def.id, q: o.q, b, ...(l ? { l } : {}) });
        } catch (e) {
          this.deps.observer?.onStrategyError?.(def.id, e);
        }
      }
      return { q, alt };
    }
    return undefined;
  }

  private async finish(
    id: string,
    pipeline: Pipeline,
    def: StrategyDef,
    reason: AllocationReason,
    fallback: { from: string; error: string } | undefined,
    budgets: Record<string, number>,
    total: number,
    features: Features,
    req: AllocationRequest,
    route: Route,
    meta: Readonly<Record<string, unknown>> | undefined,
    routing?: DecisionRouting,
  ): Promise<AllocationResult> {
    let shadow: Record<string, unknown> | undefined;
    for (const hook of this.deps.shadows?.() ?? []) {
      try {
        const o = hook.observe(this.deps.view(), pipeline, { features, totalTokens: total, ...(req.unitKey !== undefined ? { unitKey: req.unitKey } : {}) }, { strategy: def.id, budgets });
        if (o) (shadow ??= {})[hook.name] = o;
      } catch (e) {
        this.deps.observer?.onStrategyError?.(`shadow:${hook.name}`, e);
      }
    }
    const record: DecisionRecord = {
      id,
      pipeline: pipeline.id,
      pipelineVersion: pipeline.version,
      strategy: def.id,
      strategyVersion: def.version,
      strategyKind: def.kind,
      reason,
      budgets,
      totalTokens: total,
      features,
      ...(req.unitKey !== undefined ? { unitKey: req.unitKey } : {}),
      ts: Date.now(),
      ...(route.details ? { route: route.details } : {}),
      ...(meta ? { meta } : {}),
      ...(shadow ? { shadow } : {}),
      ...(routing ? { routing } : {}),
    };
    let recorded = true;
    try {
      await this.deps.decisions.write(record);
    } catch (e) {
      recorded = false;
      this.deps.observer?.onRecordError?.(e);
    }
    const out: Record<string, { tokens: number }> = {};
    let sum = 0;
    for (const a of pipeline.agents) {
      const t = budgets[a.name]!;
      out[a.name] = { tokens: t };
      sum += t;
    }
    const result: AllocationResult = {
      decisionId: id,
      pipeline: pipeline.id,
      pipelineVersion: pipeline.version,
      strategy: def.id,
      strategyVersion: def.version,
      budgets: out,
      totalTokens: total,
      unallocatedTokens: total - sum,
      reason,
      ...(fallback ? { fallback } : {}),
      recorded,
      ...(typeof route.details?.experiment === 'string' ? { experiment: route.details.experiment } : {}),
      ...(typeof route.details?.variant === 'string' ? { variant: route.details.variant } : {}),
      ...(route.details ? { route: route.details } : {}),
    };
    this.deps.observer?.onAllocation?.(result);
    return result;
  }
}

/** Guards every strategy's output: integers, within min/max, every agent present, sum within the total. */
export function checkBudgets(pipeline: Pipeline, budgets: Readonly<Record<string, number>>, total: number): Record<string, number> {
  const out: Record<string, number> = {};
  let sum = 0;
  for (const a of pipeline.agents) {
    const t = budgets[a.name];
    if (t === undefined || !Number.isInteger(t)) throw new Error(`strategy returned no integer budget for agent ${a.name}`);
    if (t < a.minTokens || (a.maxTokens !== undefined && t > a.maxTokens)) {
      throw new Error(`strategy budget ${t} for agent ${a.name} is outside [${a.minTokens}, ${a.maxTokens ?? '∞'}]`);
    }
    out[a.name] = t;
    sum += t;
  }
  if (sum > total) throw new Error(`strategy budgets sum to ${sum}, above the total ${total}`);
  return out;
}
