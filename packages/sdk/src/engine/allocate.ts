import { builtinUniform, compiledStrategy, type KindLookup } from './strategies.js';
import { routeDistribution, routeExperiments } from './routing.js';
import { deriveTokenFeatures } from './tokens.js';
import { applyTiers, checkCeiling, hasTiers, totalForCeiling, type Tiered } from './tiers.js';
import { BUILTIN_UNIFORM_ID, EngineError, type AllocationInput, type AllocationReason, type ControlView, type Features, type Pipeline, type Route, type StrategyDef } from './types.js';

/**
 * The allocation engine (pure: no I/O): route → strategy → budgets, with the fallback chain and the routing
 * stage's propensities. The server's allocation service runs it and writes the decision record; the SDK's local
 * mode runs it in process and ships the record to the server.
 */

export interface AllocationRequest {
  readonly pipeline: string;
  readonly unitKey?: string;
  readonly features?: Features;
  readonly totalTokens?: number;
  /** Cost ceiling in USD (with or instead of totalTokens; see tiers.ts). */
  readonly maxCostUsd?: number;
  readonly strategy?: string;
}

/**
 * Picks a strategy for a request before the pipeline default applies (e.g. rollout experiments).
 * Returns undefined to pass. Must not throw for ordinary input; a throw is reported and skipped.
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
 * When a request could have gone to more than one strategy (experiment variants, coverage, ramp, holdout),
 * the probability `q` that it went to the strategy that served, and every other strategy it could have gone
 * to with its probability and what that strategy would have done for this request: its budgets (`b`, pipeline
 * agent order) and, for a strategy that randomises, its logging meta (`l`, the learned strategy's
 * `meta.learner`, from which its whole action distribution is rebuilt). Absent when the route was certain (q = 1).
 */
export interface DecisionRouting {
  readonly q: number;
  readonly alt: readonly RouteAlternative[];
}

export interface RouteAlternative {
  readonly s: string;
  readonly q: number;
  readonly b: readonly number[];
  readonly l?: Readonly<Record<string, unknown>>;
  /** The models it would have served (pipeline agent order), on a pipeline with model tiers. */
  readonly m?: readonly (string | null)[];
}

export interface EngineDeps {
  readonly kinds: KindLookup;
  /** Routers consulted in order before the pipeline default. */
  readonly routers: readonly Router[];
  /** A strategy or router failed (the engine fell back or skipped it). */
  readonly onStrategyError?: (id: string, err: unknown) => void;
}

/** What the engine decided for one request; the caller records it. */
export interface EngineDecision {
  readonly pipeline: Pipeline;
  readonly def: StrategyDef;
  readonly reason: AllocationReason;
  readonly fallback?: { readonly from: string; readonly error: string };
  /** Integer budgets per agent (checked: within bounds, summing to at most the total). */
  readonly budgets: Record<string, number>;
  readonly totalTokens: number;
  /** The request's features after `<x>Text` → `<x>Tokens`. */
  readonly features: Features;
  readonly route: Route;
  readonly meta?: Readonly<Record<string, unknown>>;
  readonly routing?: DecisionRouting;
  /** The model tier stage (tiers.ts): present when the pipeline declares models or the request a cost ceiling. */
  readonly tiers?: Tiered;
  readonly maxCostUsd?: number;
}

/** Decides one request under decision id `id` (which seeds a learned strategy's draws). Throws EngineError on bad input. */
export function decide(deps: EngineDeps, view: ControlView, req: AllocationRequest, id: string): EngineDecision {
  const pipeline = view.pipelines.get(req.pipeline);
  if (!pipeline) throw new EngineError('PIPELINE_NOT_FOUND', `body/pipeline: no pipeline "${req.pipeline}"`);
  if (req.maxCostUsd !== undefined) checkCeiling(pipeline, req.maxCostUsd);
  const total = req.totalTokens ?? (req.maxCostUsd !== undefined ? totalForCeiling(pipeline, req.maxCostUsd) : pipeline.defaultTotalTokens);
  const tiered = req.maxCostUsd !== undefined || hasTiers(pipeline);
  let minSum = 0;
  for (const a of pipeline.agents) minSum += a.minTokens;
  if (total < minSum) {
    throw new EngineError('INFEASIBLE_TOTAL', `body/totalTokens (${total}) is below the sum of the agents' minTokens (${minSum})`);
  }
  const features = deriveTokenFeatures(req.features ?? {});
  const input: { -readonly [K in keyof AllocationInput]: AllocationInput[K] } = { features, totalTokens: total, decisionId: id };
  if (req.unitKey !== undefined) input.unitKey = req.unitKey;
  if (req.maxCostUsd !== undefined) input.maxCostUsd = req.maxCostUsd;
  // The request as routers see it: with the derived features (the request itself when they are its own).
  const routed0: AllocationRequest & { features: Features } = req.features === features ? (req as AllocationRequest & { features: Features }) : { ...req, features };
  const route = resolveRoute(deps, view, pipeline, routed0);
  // The chain: the routed strategy, then the pipeline default, then the built-in uniform. The first to allocate serves.
  const routed = route.strategyId === BUILTIN_UNIFORM_ID ? builtinUniform(pipeline) : view.strategies.get(route.strategyId);
  let failure: { from: string; error: string } | undefined;
  if (routed) {
    try {
      const out = compiledStrategy(deps.kinds, view, routed, pipeline).allocate(input);
      const checked = checkBudgets(pipeline, out.budgets, total);
      const tiers = tiered ? applyTiers(pipeline, out, checked, total, req.maxCostUsd) : undefined;
      const budgets = tiers ? tiers.budgets : checked;
      const routing = route.reason !== 'requested' ? routingOf(deps, view, pipeline, routed0, routed.id, total, id) : undefined;
      const d: { -readonly [K in keyof EngineDecision]: EngineDecision[K] } = { pipeline, def: routed, reason: route.reason, budgets, totalTokens: total, features, route };
      if (out.meta) d.meta = out.meta;
      if (routing) d.routing = routing;
      if (tiers) d.tiers = tiers;
      if (req.maxCostUsd !== undefined) d.maxCostUsd = req.maxCostUsd;
      return d;
    } catch (e) {
      deps.onStrategyError?.(routed.id, e);
      failure = { from: routed.id, error: e instanceof Error ? e.message : String(e) };
    }
  } else failure = { from: route.strategyId, error: 'strategy no longer exists' };

  const chain: StrategyDef[] = [];
  const dflt = pipeline.defaultStrategy ? view.strategies.get(pipeline.defaultStrategy) : undefined;
  if (dflt && dflt.pipeline === pipeline.id && dflt.id !== routed?.id) chain.push(dflt);
  chain.push(builtinUniform(pipeline));
  for (const def of chain) {
    try {
      const out = compiledStrategy(deps.kinds, view, def, pipeline).allocate(input);
      const checked = checkBudgets(pipeline, out.budgets, total);
      const tiers = tiered ? applyTiers(pipeline, out, checked, total, req.maxCostUsd) : undefined;
      const budgets = tiers ? tiers.budgets : checked;
      return {
        pipeline,
        def,
        reason: 'fallback',
        fallback: failure,
        budgets,
        totalTokens: total,
        features,
        route,
        ...(out.meta ? { meta: out.meta } : {}),
        ...(tiers ? { tiers } : {}),
        ...(req.maxCostUsd !== undefined ? { maxCostUsd: req.maxCostUsd } : {}),
      };
    } catch (e) {
      deps.onStrategyError?.(def.id, e);
    }
  }
  // Unreachable in practice: uniform only fails on an infeasible total, which was rejected above.
  throw new EngineError('INTERNAL', 'no strategy could allocate this request');
}

function resolveRoute(deps: EngineDeps, view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }): Route {
  if (req.strategy !== undefined) {
    const def = view.strategies.get(req.strategy);
    if (!def && req.strategy !== BUILTIN_UNIFORM_ID) throw new EngineError('STRATEGY_NOT_FOUND', `body/strategy: no strategy "${req.strategy}"`);
    if (def && def.pipeline !== pipeline.id) {
      throw new EngineError('STRATEGY_PIPELINE_MISMATCH', `body/strategy: strategy "${def.id}" belongs to pipeline "${def.pipeline}"`);
    }
    return { strategyId: req.strategy, reason: 'requested' };
  }
  for (const router of deps.routers) {
    try {
      const r = router.route(view, pipeline, req);
      if (r) return r;
    } catch (e) {
      deps.onStrategyError?.(`router:${router.name}`, e);
    }
  }
  return { strategyId: pipeline.defaultStrategy ?? BUILTIN_UNIFORM_ID, reason: 'default' };
}

/**
 * The routing stage's propensities (see DecisionRouting): asked of the routers; for each other strategy the
 * request could have gone to, what it would have done (no decision id: a learned strategy registers
 * nothing). Only requests with random routing pay for this. A strategy that cannot allocate is left out.
 */
function routingOf(deps: EngineDeps, view: ControlView, pipeline: Pipeline, req: AllocationRequest & { features: Features }, served: string, total: number, id: string): DecisionRouting | undefined {
  for (const router of deps.routers) {
    let dist: readonly { readonly strategyId: string; readonly q: number }[] | undefined;
    try {
      dist = router.distribution?.(view, pipeline, req);
    } catch (e) {
      deps.onStrategyError?.(`router:${router.name}`, e);
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
        // Seeded per decision and alternative, so the logged alternatives are reproducible too.
        const cost = req.maxCostUsd !== undefined ? { maxCostUsd: req.maxCostUsd } : {};
        const out = compiledStrategy(deps.kinds, view, def, pipeline).allocate({ features: req.features, totalTokens: total, drawSeed: `${id}/${def.id}`, ...cost });
        // On a pipeline with model tiers or under a cost ceiling, what the alternative would have served after the tier stage.
        const t = req.maxCostUsd !== undefined || hasTiers(pipeline) ? applyTiers(pipeline, out, checkBudgets(pipeline, out.budgets, total), total, req.maxCostUsd) : undefined;
        const b = pipeline.agents.map((a) => (t ?? out).budgets[a.name] ?? 0);
        const l = out.meta?.learner as Readonly<Record<string, unknown>> | undefined;
        const m = t?.models ? pipeline.agents.map((a) => t.models![a.name] ?? null) : undefined;
        alt.push({ s: def.id, q: o.q, b, ...(l ? { l } : {}), ...(m ? { m } : {}) });
      } catch (e) {
        deps.onStrategyError?.(def.id, e);
      }
    }
    return { q, alt };
  }
  return undefined;
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

/**
 * `<epoch second, base 36>-<UUID>`: 122 random bits, and the second the decision was made, which names the
 * time bucket its record is stored in (so reading it needs no index). The UUID is a version 4 UUID (RFC 9562,
 * lower-case hex), formatted here from a pool of cryptographically random bytes (`crypto.getRandomValues`,
 * refilled every 256 ids) rather than by `crypto.randomUUID`, whose argument checks cost more than the rest of a
 * local allocation's id.
 */
export function newDecisionId(now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  if (sec !== idSecond) {
    idSecond = sec;
    idPrefix = `${sec.toString(36)}-`;
  }
  if (poolAt === POOL_BYTES) {
    globalThis.crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const b = pool;
  const i = poolAt;
  poolAt += 16;
  const h = HEX;
  return (
    idPrefix +
    h[b[i]!]! + h[b[i + 1]!]! + h[b[i + 2]!]! + h[b[i + 3]!]! + '-' +
    h[b[i + 4]!]! + h[b[i + 5]!]! + '-' +
    h[(b[i + 6]! & 0x0f) | 0x40]! + h[b[i + 7]!]! + '-' +
    h[(b[i + 8]! & 0x3f) | 0x80]! + h[b[i + 9]!]! + '-' +
    h[b[i + 10]!]! + h[b[i + 11]!]! + h[b[i + 12]!]! + h[b[i + 13]!]! + h[b[i + 14]!]! + h[b[i + 15]!]!
  );
}
let idSecond = -1;
let idPrefix = '';
const POOL_BYTES = 16 * 256;
const pool = new Uint8Array(POOL_BYTES);
let poolAt = POOL_BYTES;
const HEX: readonly string[] = Array.from({ length: 256 }, (_, v) => v.toString(16).padStart(2, '0'));

/** The experiment router (see routing.ts). */
export const experimentRouter: Router = {
  name: 'rollout',
  route: (view, pipeline, req) => routeExperiments(view, pipeline, req.unitKey, req.features),
  distribution: (view, pipeline, req) => routeDistribution(view, pipeline, req.unitKey, req.features),
};

/** A decision record: what was decided for one request, joined with its outcome later and read by off-policy evaluation (the server's DecisionRecord). */
export interface EngineRecord {
  readonly id: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly strategy: string;
  readonly strategyVersion: number;
  readonly strategyKind: string;
  readonly reason: string;
  readonly budgets: Readonly<Record<string, number>>;
  readonly totalTokens: number;
  readonly features: Features;
  readonly unitKey?: string;
  /** Epoch ms. */
  readonly ts: number;
  /** Routing details (experiment, variant, phase…) and strategy meta (propensity, model version…). */
  readonly route?: Readonly<Record<string, unknown>>;
  readonly meta?: Readonly<Record<string, unknown>>;
  /** What shadow strategies would have done (the server's shadow hook). */
  readonly shadow?: Readonly<Record<string, unknown>>;
  /** The routing stage of the logging policy, when it was random (see DecisionRouting). */
  readonly routing?: DecisionRouting;
  /** The model served per agent, on a pipeline with model tiers. */
  readonly models?: Readonly<Record<string, string>>;
  /** The request's cost ceiling in USD, when it carried one. */
  readonly maxCostUsd?: number;
}

/** The decision record of an engine decision (what the server writes, and what local mode ships). */
export function decisionRecordOf(id: string, d: EngineDecision, unitKey: string | undefined, ts: number, shadow?: Readonly<Record<string, unknown>>): EngineRecord {
  // Optional fields are added in place, in the order the record's fields are listed (its JSON keeps that order).
  const r: { -readonly [K in keyof EngineRecord]: EngineRecord[K] } = {
    id,
    pipeline: d.pipeline.id,
    pipelineVersion: d.pipeline.version,
    strategy: d.def.id,
    strategyVersion: d.def.version,
    strategyKind: d.def.kind,
    reason: d.reason,
    budgets: d.budgets,
    totalTokens: d.totalTokens,
    features: d.features,
  } as EngineRecord;
  if (unitKey !== undefined) r.unitKey = unitKey;
  r.ts = ts;
  if (d.route.details) r.route = d.route.details;
  if (d.meta) r.meta = d.meta;
  if (shadow) r.shadow = shadow;
  if (d.routing) r.routing = d.routing;
  if (d.tiers?.models) r.models = d.tiers.models;
  if (d.maxCostUsd !== undefined) r.maxCostUsd = d.maxCostUsd;
  return r;
}

/** The allocation answer (POST /v1/allocations) of an engine decision. */
export interface EngineResult {
  readonly decisionId: string;
  readonly pipeline: string;
  readonly pipelineVersion: number;
  readonly strategy: string;
  readonly strategyVersion: number;
  /** Tokens per agent, and its model on a pipeline with model tiers. */
  readonly budgets: Record<string, { tokens: number; model?: string }>;
  readonly totalTokens: number;
  readonly unallocatedTokens: number;
  /** The request's cost ceiling, and the planned cost of the budgets on the served models (tiers.ts), when priced. */
  readonly maxCostUsd?: number;
  readonly costUsd?: number;
  readonly reason: AllocationReason;
  readonly fallback?: { readonly from: string; readonly error: string };
  readonly recorded: boolean;
  readonly experiment?: string;
  readonly variant?: string;
  readonly route?: Readonly<Record<string, unknown>>;
}

export function allocationResultOf(id: string, d: EngineDecision, recorded: boolean): EngineResult {
  const out: Record<string, { tokens: number; model?: string }> = {};
  let sum = 0;
  const agents = d.pipeline.agents;
  const models = d.tiers?.models;
  for (let i = 0; i < agents.length; i++) {
    const name = agents[i]!.name;
    const t = d.budgets[name]!;
    const m = models?.[name];
    out[name] = m !== undefined ? { tokens: t, model: m } : { tokens: t };
    sum += t;
  }
  // Under a cost ceiling the request's total is what the ceiling leaves: the budgets and the reserve it can pay for.
  const total = d.tiers ? sum + d.tiers.reserve : d.totalTokens;
  const details = d.route.details;
  // Optional fields are added in place, in the answer's field order (its JSON keeps that order).
  const r: { -readonly [K in keyof EngineResult]: EngineResult[K] } = {
    decisionId: id,
    pipeline: d.pipeline.id,
    pipelineVersion: d.pipeline.version,
    strategy: d.def.id,
    strategyVersion: d.def.version,
    budgets: out,
    totalTokens: total,
    unallocatedTokens: total - sum,
  } as EngineResult;
  if (d.maxCostUsd !== undefined) r.maxCostUsd = d.maxCostUsd;
  if (d.tiers?.costUsd !== undefined) r.costUsd = d.tiers.costUsd;
  r.reason = d.reason;
  if (d.fallback) r.fallback = d.fallback;
  r.recorded = recorded;
  if (details) {
    if (typeof details.experiment === 'string') r.experiment = details.experiment;
    if (typeof details.variant === 'string') r.variant = details.variant;
    r.route = details;
  }
  return r;
}
