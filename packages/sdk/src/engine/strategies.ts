import { waterFill, waterFillColumns } from '../water-fill.js';
import { hasTiers, poolModels } from './tiers.js';
import { BUILTIN_UNIFORM_ID, type CompiledStrategy, type ControlView, type Features, type Pipeline, type StrategyDef } from './types.js';

/**
 * The built-in strategies' math (pure): what `uniform`, `static`, `estimate` and `priority-pool` allocate. The
 * server's strategy kinds add parameter schemas and checks around these and compile with them; the SDK's local
 * mode compiles the same functions.
 */

export function toBudgets(pipeline: Pipeline, values: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  const agents = pipeline.agents;
  for (let i = 0; i < agents.length; i++) out[agents[i]!.name] = values[i]!;
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
    if (typeof taskValue === 'string' && m.task && Object.hasOwn(m.task, taskValue)) need *= m.task[taskValue]!;
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
    if (!m) return undefined;
    const per = Object.entries(m.per ?? {});
    return { base: m.base ?? 0, names: per.map(([f]) => f), coefs: per.map(([, c]) => c), task: m.task };
  });
  return (features, total) => {
    const taskValue = features[taskFeature];
    const share = total / n;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const m = models[i];
      if (!m) {
        out.push(share);
        continue;
      }
      let need = m.base;
      const { names, coefs } = m;
      for (let k = 0; k < names.length; k++) {
        const x = features[names[k]!];
        if (typeof x === 'number' && Number.isFinite(x)) need += coefs[k]! * x;
      }
      if (typeof taskValue === 'string' && m.task && Object.hasOwn(m.task, taskValue)) need *= m.task[taskValue]!;
      out.push(Math.max(0, need * margin));
    }
    return out;
  };
}

/** Request-time estimation: give each agent what its features say it needs, scaled down to fit the total. */
export function compileEstimate(params: EstimateParams, pipeline: Pipeline): CompiledStrategy {
  const needsOf = estimator(params, pipeline);
  const agents = pipeline.agents;
  const n = agents.length;
  const mins = agents.map((a) => a.minTokens);
  const maxes = agents.map((a) => a.maxTokens ?? Infinity);
  return {
    allocate({ features, totalTokens }) {
      const needs = needsOf(features, totalTokens);
      // Each agent is capped at its need (rounded up), which the record logs too.
      const ceiled: number[] = [];
      const caps: number[] = [];
      for (let i = 0; i < n; i++) {
        const c = Math.ceil(needs[i]!);
        ceiled.push(c);
        caps.push(Math.min(maxes[i]!, c));
      }
      const fit = waterFillColumns(mins, caps, needs, n, totalTokens);
      return { budgets: toBudgets(pipeline, fit), meta: { needs: ceiled } };
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
  const n = agents.length;
  const estimate = params.estimate ? estimator(params.estimate, pipeline) : undefined;
  // Read once: each agent's fixed need, bounds, and the agents of each class in pipeline order.
  const fixed = agents.map((a) => params.needs?.[a.name]);
  const classes = CLASSES.map((cls) => agents.map((a, i) => (a.priority === cls ? i : -1)).filter((i) => i >= 0)).filter((idx) => idx.length > 0);
  const zeros = new Array<number>(n).fill(0);
  const tiered = hasTiers(pipeline);
  return {
    allocate({ features, totalTokens, maxCostUsd }) {
      const estimated = estimate?.(features, totalTokens);
      const share = totalTokens / n;
      const needs: number[] = [];
      const budgets: number[] = [];
      for (let i = 0; i < n; i++) {
        const a = agents[i]!;
        const raw = fixed[i] ?? estimated?.[i] ?? a.maxTokens ?? share;
        needs.push(Math.max(a.minTokens, Math.min(a.maxTokens ?? Infinity, Math.ceil(raw))));
        budgets.push(a.minTokens);
      }
      let minSum = 0;
      for (let i = 0; i < n; i++) minSum += budgets[i]!;
      let pool = totalTokens - minSum;
      for (const idx of classes) {
        if (pool <= 0) continue;
        const room = idx.map((i) => needs[i]! - budgets[i]!);
        const fit = waterFillColumns(zeros, room, room, idx.length, pool);
        for (let k = 0; k < idx.length; k++) {
          budgets[idx[k]!]! += fit[k]!;
          pool -= fit[k]!;
        }
      }
      const models = tiered ? poolModels(pipeline, needs, budgets, maxCostUsd) : undefined;
      return models ? { budgets: toBudgets(pipeline, budgets), meta: { needs }, models } : { budgets: toBudgets(pipeline, budgets), meta: { needs } };
    },
  };
}

/** What a strategy kind must offer the engine: an optional check against the pipeline, and compilation. */
export interface EngineKind {
  check?(params: never, pipeline: Pipeline): void;
  compile(params: never, ctx: { readonly pipeline: Pipeline; readonly strategyId: string }): CompiledStrategy;
}

/**
 * A strategy of a kind this process does not implement (e.g. a kind only a server module registers). The engine
 * falls back past it like past any failing strategy; the SDK's local mode refuses to serve such a decision
 * rather than log it under a route it did not serve (see local.ts).
 */
export class UnknownKindError extends Error {
  constructor(readonly kind: string) {
    super(`strategy kind ${kind} is not registered in this process`);
    this.name = 'UnknownKindError';
  }
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
  // Front cache by definition object (no key string per call). A hit is what the view's memo holds for this
  // (view, id, version, pipeline version): an entry is only kept for the view and pipeline it was looked up with.
  const hit = compiledByDef.get(def);
  if (hit !== undefined && hit.view === view && hit.pipeline === pipeline) return hit.compiled;
  // Keyed by pipeline too: the built-in uniform strategy has the same id and version on every pipeline.
  const compiled = view.memo(`strategy:${pipeline.id}:${def.id}:${def.version}:${pipeline.version}`, () => {
    const kind = kinds.get(def.kind);
    if (!kind) throw new UnknownKindError(def.kind);
    kind.check?.(def.params, pipeline);
    return kind.compile(def.params, { pipeline, strategyId: def.id });
  });
  compiledByDef.set(def, { view, pipeline, compiled });
  return compiled;
}
const compiledByDef = new WeakMap<StrategyDef, { readonly view: ControlView; readonly pipeline: Pipeline; readonly compiled: CompiledStrategy }>();

/** The built-in uniform strategy of a pipeline (one object per pipeline object). */
export function builtinUniform(pipeline: Pipeline): StrategyDef {
  let def = builtinByPipeline.get(pipeline);
  if (!def) {
    def = { id: BUILTIN_UNIFORM_ID, version: 0, pipeline: pipeline.id, kind: 'uniform', params: {} };
    builtinByPipeline.set(pipeline, def);
  }
  return def;
}
const builtinByPipeline = new WeakMap<Pipeline, StrategyDef>();

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

export interface ProbeCutParams {
  readonly agent: string;
  readonly fraction: number;
  readonly base: { readonly id: string; readonly kind: string; readonly params: Readonly<Record<string, unknown>> };
}

/**
 * The critical-path probe's arm (kind `probe-cut`, made by the server's rollout module): the base strategy's
 * allocation with one agent cut to `fraction` of its budget (never below its minTokens). The freed tokens stay
 * unallocated, so only that one agent's budget differs from control. The base strategy's kind and params are
 * frozen into the arm. The server's kind (src/rollout/probe.ts) and the SDK's local mode compile with this.
 */
export function compileProbeCut(params: ProbeCutParams, pipeline: Pipeline, kinds: KindLookup): CompiledStrategy {
  const base = params.base.kind === 'probe-cut' ? undefined : kinds.get(params.base.kind);
  if (!base) throw new UnknownKindError(params.base.kind);
  const inner = base.compile(params.base.params, { pipeline, strategyId: params.base.id });
  const min = pipeline.agents.find((a) => a.name === params.agent)?.minTokens ?? 0;
  return {
    allocate(input) {
      const out = inner.allocate(input);
      const b = out.budgets[params.agent] ?? 0;
      const cut = Math.max(min, Math.min(b, Math.floor(b * params.fraction)));
      return {
        budgets: { ...out.budgets, [params.agent]: cut },
        meta: { ...out.meta, probe: { agent: params.agent, fraction: params.fraction, baseTokens: b } },
      };
    },
  };
}

/** The `probe-cut` kind for a process without the server's schemas (the checks the server applies when compiling). */
export function probeCutEngineKind(kinds: () => KindLookup): NonNullable<ReturnType<KindLookup['get']>> {
  return {
    check(params, pipeline) {
      const p = params as ProbeCutParams;
      if (!pipeline.agents.some((a) => a.name === p.agent)) throw new Error(`body/params/agent: pipeline "${pipeline.id}" has no agent "${p.agent}"`);
      const base = p.base.kind === 'probe-cut' ? undefined : kinds().get(p.base.kind);
      if (!base) throw new UnknownKindError(p.base.kind);
      base.check?.(p.base.params, pipeline);
    },
    compile: (params, { pipeline }) => compileProbeCut(params as ProbeCutParams, pipeline, kinds()),
  };
}
