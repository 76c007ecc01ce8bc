/**
 * The allocation engine's data model (pure, no I/O): the control-plane state as the server stores it, its typed
 * view, pipelines and strategies. The server builds its in-memory view with `viewOf`; the SDK's local mode builds
 * the same view from the sync endpoint's document, so both evaluate requests against identical objects.
 */

/** Request features: numbers, strings or booleans. A string feature named `<x>Text` is tokenized into `<x>Tokens`. */
export type Features = Readonly<Record<string, string | number | boolean | null>>;

export interface AllocationInput {
  readonly features: Features;
  readonly totalTokens: number;
  readonly unitKey?: string;
  /** The id the decision will be recorded under (absent in offline evaluation). Seeds a learned strategy's draws. */
  readonly decisionId?: string;
  /** Seeds a learned strategy's draws when there is no decision id (what another strategy would have done). */
  readonly drawSeed?: string;
  /** The request's cost ceiling in USD, when it carries one (see tiers.ts). */
  readonly maxCostUsd?: number;
}

export interface AllocationOutput {
  /** Integer budgets per agent; their sum never exceeds the total. */
  readonly budgets: Readonly<Record<string, number>>;
  /** Extra fields logged in the decision record (e.g. a learned policy's propensity). */
  readonly meta?: Readonly<Record<string, unknown>>;
  /** The model per agent, for a strategy that chooses models itself (else the built-in rule of tiers.ts applies). */
  readonly models?: Readonly<Record<string, string>>;
}

/** A strategy compiled for one pipeline version and one parameter set: a pure function of its input. */
export interface CompiledStrategy {
  allocate(input: AllocationInput): AllocationOutput;
}

export type Priority = 'critical' | 'standard' | 'background';

/** A candidate model of an agent, with the price the server resolved when the pipeline was written (USD per million tokens). */
export interface ModelTier {
  readonly model: string;
  readonly provider?: string;
  readonly price: { readonly inputPerMTokUsd: number; readonly outputPerMTokUsd: number };
}

/** An agent with defaults applied. */
export interface Agent {
  readonly name: string;
  readonly model?: string;
  readonly priority: Priority;
  readonly minTokens: number;
  readonly maxTokens: number | undefined;
  readonly price?: { readonly inputPerMTokUsd: number; readonly outputPerMTokUsd: number };
  /** Candidate models, the first being the default (absent: the agent has no model tiers). */
  readonly models?: readonly ModelTier[];
}

export interface Pipeline {
  readonly id: string;
  readonly version: number;
  readonly agents: readonly Agent[];
  readonly defaultTotalTokens: number;
  readonly defaultStrategy: string | undefined;
  readonly description?: string;
}

export interface StrategyDef {
  readonly id: string;
  readonly version: number;
  readonly pipeline: string;
  readonly kind: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly description?: string;
}

/** Id of the built-in uniform strategy every pipeline falls back to; `@` keeps it apart from user ids. */
export const BUILTIN_UNIFORM_ID = '@uniform';

/**
 * Kinds of control-plane documents. Each lives in one hash of the `{config}` slot, is loaded whole into
 * every process's snapshot, and is refreshed when any of them changes.
 */
export const CONTROL_KINDS = ['pipelines', 'strategies', 'experiments', 'priceOverrides', 'features', 'models'] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];

export interface Versioned<T> {
  readonly id: string;
  readonly version: number;
  readonly doc: T;
}

export interface RawControlState {
  readonly version: number;
  readonly kinds: Readonly<Record<ControlKind, ReadonlyMap<string, Versioned<unknown>>>>;
}

/** Typed, immutable view of one control-plane state. Built once per state and shared by all readers. */
export interface ControlView {
  readonly version: number;
  readonly raw: RawControlState;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly strategies: ReadonlyMap<string, StrategyDef>;
  /** Per-view memo for derived data (compiled strategies, bucketing tables, …): dropped with the view. */
  memo<T>(key: string, make: () => T): T;
}

/** A pipeline document as stored (the server validates it on write). */
interface PipelineDoc {
  readonly agents: readonly {
    readonly name: string;
    readonly model?: string;
    readonly priority?: Priority;
    readonly minTokens?: number;
    readonly maxTokens?: number;
    readonly price?: { readonly inputPerMTokUsd: number; readonly outputPerMTokUsd: number };
    readonly models?: readonly ModelTier[];
  }[];
  readonly defaultTotalTokens: number;
  readonly defaultStrategy?: string;
  readonly description?: string;
}

interface StrategyDoc {
  readonly pipeline: string;
  readonly kind: string;
  readonly params?: Readonly<Record<string, unknown>>;
  readonly description?: string;
}

export function toPipeline(v: Versioned<unknown>): Pipeline {
  const body = v.doc as PipelineDoc;
  const agents: Agent[] = body.agents.map((a) => ({
    name: a.name,
    ...(a.model !== undefined ? { model: a.model } : {}),
    priority: a.priority ?? 'standard',
    minTokens: a.minTokens ?? 0,
    maxTokens: a.maxTokens,
    ...(a.price ? { price: a.price } : {}),
    ...(a.models && a.models.length > 0 ? { models: a.models } : {}),
  }));
  return {
    id: v.id,
    version: v.version,
    agents,
    defaultTotalTokens: body.defaultTotalTokens,
    defaultStrategy: body.defaultStrategy,
    ...(body.description !== undefined ? { description: body.description } : {}),
  };
}

const views = new WeakMap<RawControlState, ControlView>();

export function viewOf(raw: RawControlState): ControlView {
  const cached = views.get(raw);
  if (cached) return cached;
  const pipelines = new Map<string, Pipeline>();
  for (const v of raw.kinds.pipelines.values()) pipelines.set(v.id, toPipeline(v));
  const strategies = new Map<string, StrategyDef>();
  for (const v of raw.kinds.strategies.values()) {
    const b = v.doc as StrategyDoc;
    strategies.set(v.id, {
      id: v.id,
      version: v.version,
      pipeline: b.pipeline,
      kind: b.kind,
      params: b.params ?? {},
      ...(b.description !== undefined ? { description: b.description } : {}),
    });
  }
  const memo = new Map<string, unknown>();
  const view: ControlView = {
    version: raw.version,
    raw,
    pipelines,
    strategies,
    memo<T>(key: string, make: () => T): T {
      const got = memo.get(key);
      if (got !== undefined || memo.has(key)) return got as T;
      const v = make();
      memo.set(key, v);
      return v;
    },
  };
  views.set(raw, view);
  return view;
}

/** The wire form of a control state (the sync endpoint's `state`): every kind as a list of documents. */
export interface WireControlState {
  readonly version: number;
  readonly kinds: Readonly<Partial<Record<ControlKind, readonly Versioned<unknown>[]>>>;
}

export function toWire(raw: RawControlState, keep: (kind: ControlKind, v: Versioned<unknown>) => boolean = () => true): WireControlState {
  const kinds: Partial<Record<ControlKind, Versioned<unknown>[]>> = {};
  for (const k of CONTROL_KINDS) kinds[k] = [...raw.kinds[k].values()].filter((v) => keep(k, v));
  return { version: raw.version, kinds };
}

export function fromWire(w: WireControlState): RawControlState {
  const kinds = {} as Record<ControlKind, Map<string, Versioned<unknown>>>;
  for (const k of CONTROL_KINDS) kinds[k] = new Map((w.kinds[k] ?? []).map((v) => [v.id, v] as const));
  return { version: w.version, kinds };
}

/** An error with a stable code (the server's error catalog answers it as a 4xx). */
export class EngineError extends Error {
  constructor(
    readonly code: 'PIPELINE_NOT_FOUND' | 'INFEASIBLE_TOTAL' | 'STRATEGY_NOT_FOUND' | 'STRATEGY_PIPELINE_MISMATCH' | 'INTERNAL' | 'INFEASIBLE_COST' | 'UNPRICED_AGENT',
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

/** Why this strategy served the request. */
export type AllocationReason = 'requested' | 'experiment' | 'holdout' | 'default' | 'fallback';

/** A routing decision: which strategy serves the request, and what to log about why. */
export interface Route {
  readonly strategyId: string;
  readonly reason: AllocationReason;
  /** Logged in the decision record and returned to the caller (e.g. experiment, variant, phase). */
  readonly details?: Readonly<Record<string, unknown>>;
}
