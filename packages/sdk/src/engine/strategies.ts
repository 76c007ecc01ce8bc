import { waterFill } from '../water-fill.js';
import { BUILTIN_UNIFORM_ID, type CompiledStrategy, type ControlView, type Features, type Pipeline, type StrategyDef } from './types.js';

/**
 * The built-in strategies' math (pure): what `uniform`, `static`, `estimate` and `priority-pool` allocate. The
 * server's strategy kinds add parameter schemas and checks around these and compile with them; the SDK's local
 * mode compiles the same functions.
 */

export function toBudgets(pipeline: Pipeline, values: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  pipeline.agents.forEach((a, i) => {
    out[a.name] = values[i]!;
  });
  return out;
}

/**
 * A split that depends only on the total, memoised per total (bounded: cleared past 256 totals). The budgets
 * object is shared between calls: callers copy before changing it (the allocation core's checkBudgets does).
 */
function byTotal(split: (total: number) => Record<string, number>): CompiledStrategy {
  const cache = new Map<number, { budgets: Record<string, number> }>();
  return {
    allocate({ totalTokens }) {
      let out = cache.get(totalTokens);
      if (!out) {
        if (cache.size >= 256) cache.clear();
        out = { budgets: split(totalTokens) };
        cache.set(totalTokens, out);
      }
      return out;
    },
  };
}

/** Equal shares of the total, within each agent's min/max. */
export function compileUniform(pipeline: Pipeline): CompiledStrategy {
  const agents = pipeline.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity, weight: 1 }));
  return byTotal((total) => toBudgets(pipeline, waterFill(agents, total)));
}

export interface StaticParams {
  readonly shares: Readonly<Record<string, number>>;
}

/** Fixed per-agent shares of the total, within min/max. */
export function compileStatic(params: StaticParams, pipeline: Pipeline): CompiledStrategy {
  const agents = pipeline.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens ?? Infinity, weight: params.shares[a.name] ?? 0 }));
  return byTotal((total) => toBudgets(pipeline, waterFill(agents, total)));
}

export interface EstimateAgentModel {
  readonly base?: number;
  readonly per?: Readonly<Record<string, number>>;
  readonly task?: Readonly<Record<string, number>>;
}

export interface EstimateParams {
  readonly margin?: number;
  readonly taskFeature?: string;
  readonly agents: Readonly<Record<string, EstimateAgentModel>>;
}

/**
 * Each agent's need for this request: (base + Σ per[f]·features[f]) × task[features[taskFeature]] × margin.
 * Agents without a model need an equal share of the total. Missing or non-numeric features count as 0.
 */
export function estimateNeeds(params: EstimateParams, pipeline: Pipeline, features: Features, total: number): number[] {
  const margin = params.margin ?? 1.2;
  const taskValue = features[params.taskFeature ?? 'taskType'];
  const share = total / pipeline.agents.length;
  return pipeline.agents.map((a) => {
    const m = params.agents[a.name];
    if (!m) return share;
    let need = m.base ?? 0;
    for (const [f, coef] of Object.entries(m.per ?? {})) {
      const x = features[f];
      if (typeof x === 'number' && Number.isFinite(x)) need += coef * x;
    }
    if (typeof taskValue === 'string' && m.task && m.task[taskValue] !== undefined) need *= m.task[taskValue];
    return Math.max(0, need * margin);
  });
}

/** estimateNeeds with the parameters read once (the same arithmetic, in the same order). */
function estimator(params: EstimateParams, pipeline: Pipeline): (features: Features, total: number) => number[] {
  const margin = params.margin ?? 1.2;
  const taskFeature = params.taskFeature ?? 'taskType';
  const n = pipeline.agents.length;
  const models = pipeline.agents.map((a) => {
    const m = params.agents[a.name];
    return m ? { base: m.base ?? 0, per: Object.entries(m.per ?? {}), task: m.task } : undefined;
  });
  return (features, total) => {
    const taskValue = features[taskFeature];
    const share = total / n;
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const m = models[i];
      if (!m) {
        out[i] = share;
        continue;
      }
      let need = m.base;
      for (const [f, coef] of m.per) {
        const x = features[f];
        if (typeof x === 'number' && Number.isFinite(x)) need += coef * x;
      }
      if (typeof taskValue === 'string' && m.task && m.task[taskValue] !== undefined) need *= m.task[taskValue];
      out[i] = Math.max(0, need * margin);
    }
    return out;
  };
}

/** Request-time estimation: give each agent what its features say it needs, scaled down to fit the total. */
export function compileEstimate(params: EstimateParams, pipeline: Pipeline): CompiledStrategy {
  const needsOf = estimator(params, pipeline);
  return {
    allocate({ features, totalTokens }) {
      const needs = needsOf(features, totalTokens);
      const fit = waterFill(
        pipeline.agents.map((a, i) => ({ min: a.minTokens, cap: Math.min(a.maxTokens ?? Infinity, Math.ceil(needs[i]!)), weight: needs[i]! })),
        totalTokens,
      );
      return { budgets: toBudgets(pipeline, fit), meta: { needs: needs.map((n) => Math.ceil(n)) } };
    },
  };
}

export interface PriorityPoolParams {
  readonly needs?: Readonly<Record<string, number>>;
  readonly estimate?: EstimateParams;
}

const CLASSES = ['critical', 'standard', 'background'] as const;

/**
 * Elastic pool with priority classes. Every agent first gets its minimum; then critical agents draw up
 * to their need, then standard ones, then background ones best-effort from what is left. Within a class a
 * short pool is shared in proportion to need. Need comes from `needs`, else from `estimate`, else maxTokens,
 * else an equal share. What no class needs stays unallocated: the request's reserve for the budget controller.
 */
export function compilePriorityPool(params: PriorityPoolParams, pipeline: Pipeline): CompiledStrategy {
  const agents = pipeline.agents;
  const estimate = params.estimate ? estimator(params.estimate, pipeline) : undefined;
  return {
    allocate({ features, totalTokens }) {
      const estimated = estimate?.(features, totalTokens);
      const share = totalTokens / agents.length;
      const needs = agents.map((a, i) => {
        const raw = params.needs?.[a.name] ?? estimated?.[i] ?? a.maxTokens ?? share;
        return Math.max(a.minTokens, Math.min(a.maxTokens ?? Infinity, Math.ceil(raw)));
      });
      const budgets = agents.map((a) => a.minTokens);
      let pool = totalTokens - budgets.reduce((s, v) => s + v, 0);
      for (const cls of CLASSES) {
        const idx = agents.map((a, i) => (a.priority === cls ? i : -1)).filter((i) => i >= 0);
        if (idx.length === 0 || pool <= 0) continue;
        const fit = waterFill(
          idx.map((i) => ({ min: 0, cap: needs[i]! - budgets[i]!, weight: needs[i]! - budgets[i]! })),
          pool,
        );
        idx.forEach((i, k) => {
          budgets[i]! += fit[k]!;
          pool -= fit[k]!;
        });
      }
      return { budgets: toBudgets(pipeline, budgets), meta: { needs } };
    },
  };
}

/** What a strategy kind must offer the engine: an optional check against the pipeline, and compilation. */
export interface EngineKind {
  check?(params: never, pipeline: Pipeline): void;
  compile(params: never, ctx: { readonly pipeline: Pipeline; readonly strategyId: string }): CompiledStrategy;
}

/** Strategy kinds by name (the server's StrategyKinds registry is one). */
export interface KindLookup {
  get(kind: string): { check?(params: unknown, pipeline: Pipeline): void; compile(params: unknown, ctx: { readonly pipeline: Pipeline; readonly strategyId: string }): CompiledStrategy } | undefined;
}

/**
 * Compiles strategies for a control view, memoised in the view (so recompiled only when config changes).
 * Throws when the strategy cannot be compiled for this pipeline (the caller falls back).
 */
export function compiledStrategy(kinds: KindLookup, view: ControlView, def: StrategyDef, pipeline: Pipeline): CompiledStrategy {
  // Keyed by pipeline too: the built-in uniform strategy has the same id and version on every pipeline.
  return view.memo(`strategy:${pipeline.id}:${def.id}:${def.version}:${pipeline.version}`, () => {
    const kind = kinds.get(def.kind);
    if (!kind) throw new Error(`strategy kind ${def.kind} is not registered in this process`);
    kind.check?.(def.params, pipeline);
    return kind.compile(def.params, { pipeline, strategyId: def.id });
  });
}

/** The built-in uniform strategy of a pipeline. */
export function builtinUniform(pipeline: Pipeline): StrategyDef {
  return { id: BUILTIN_UNIFORM_ID, version: 0, pipeline: pipeline.id, kind: 'uniform', params: {} };
}

/** Refuses parameter maps that name agents the pipeline does not have (the server's checks, as plain errors). */
function checkAgents(pipeline: Pipeline, names: Iterable<string>, field: string): void {
  const known = new Set(pipeline.agents.map((a) => a.name));
  for (const n of names) if (!known.has(n)) throw new Error(`${field}/${n}: pipeline ${pipeline.id} has no agent "${n}"`);
}

/** The built-in kinds with the checks the server applies when compiling (a pipeline may change under a strategy). */
export const BUILTIN_ENGINE_KINDS: Readonly<Record<string, { check?(params: unknown, pipeline: Pipeline): void; compile(params: unknown, ctx: { readonly pipeline: Pipeline }): CompiledStrategy }>> = {
  uniform: { compile: (_p, { pipeline }) => compileUniform(pipeline) },
  static: {
    check(params, pipeline) {
      const p = params as StaticParams;
      checkAgents(pipeline, Object.keys(p.shares), 'body/params/shares');
      if (!Object.values(p.shares).some((v) => v > 0)) throw new Error('body/params/shares: at least one share must be positive');
    },
    compile: (params, { pipeline }) => compileStatic(params as StaticParams, pipeline),
  },
  estimate: {
    check: (params, pipeline) => checkAgents(pipeline, Object.keys((params as EstimateParams).agents), 'body/params/agents'),
    compile: (params, { pipeline }) => compileEstimate(params as EstimateParams, pipeline),
  },
  'priority-pool': {
    check(params, pipeline) {
      const p = params as PriorityPoolParams;
      checkAgents(pipeline, Object.keys(p.needs ?? {}), 'body/params/needs');
      if (p.estimate) checkAgents(pipeline, Object.keys(p.estimate.agents), 'body/params/estimate/agents');
    },
    compile: (params, { pipeline }) => compilePriorityPool(params as PriorityPoolParams, pipeline),
  },
};
