import {
  BUILTIN_ENGINE_KINDS,
  compileLearned,
  decide,
  defaultSplitOf,
  defaultTierAction,
  servingModel,
  tierAgentsOf,
  tierNeedGuess,
  viewOf,
  type CompiledStrategy,
  type ControlKind,
  type ControlView,
  type KindLookup,
  type LearnedServingParams,
  type Pipeline,
  type RawControlState,
  type Versioned,
} from '@apportion/sdk/engine';
import type { LoggedEvent } from '../events.js';
import { compileFeatures, type FeatureScaling } from '../features.js';
import { DEFAULT_GATE, gateVerdict } from '../gate.js';
import { loggingPolicyOf } from '../hooks.js';
import type { LearnedParams } from '../kind.js';
import { initialWeights, serializeWeights } from '../model.js';
import { mulberry32 } from '../rng.js';
import { tierGateInput } from '../tier-gate.js';
import type { SerializedTierParams } from '../tiers-policy.js';
import { trainTiers } from '../train-tiers.js';
import { worldFeatures, type SimContext } from './world.js';
import type { TierWorld } from './tiers.js';

/**
 * The service's learning loop for a pipeline with model tiers, run in process on a tier world (no Redis, no HTTP):
 * every decision is the engine's (`decide`: the learned strategy compiled as the server and the SDK compile it, its
 * joint decision, the tier stage), logged as the outcome worker logs it (`loggingPolicyOf` on the decision record's
 * fields), trained by the training job's tier retrain (`trainTiers`) every `trainEvery` outcomes, and activated by
 * the activation gate (`gateVerdict` on `tierGateInput`, the decisions since the candidate was proposed) exactly as
 * TrainingService.train does: a pending candidate is judged first (too few decisions: it keeps waiting and nothing is
 * trained over it), then a new version is trained and becomes the candidate. The models document is rebuilt as the
 * registry writes it. Not simulated: the runtime guard's reverts (its control arm does serve its share), drift
 * recovery, default rewards (every decision gets its outcome).
 */
export interface TierLoopOptions {
  readonly world: TierWorld;
  readonly outcomes: number;
  readonly seed: number;
  /** The request's cost ceiling (default the world's) and token total (default the world's). */
  readonly maxCostUsd?: number;
  readonly totalTokens?: number;
  /** Only these models (indices into the world's models) are declared per agent: [0] is token-only on the first model. */
  readonly models?: readonly number[];
  /** The learned strategy's parameters (defaults: the service's). */
  readonly params?: LearnedParams;
}

export interface TierLoopResult {
  /** Per decision: the request, the served action's expected (noise-free) quality and planned cost, the model indices served. */
  readonly contexts: SimContext[];
  readonly quality: Float64Array;
  readonly cost: Float64Array;
  readonly assign: number[][];
  /** Serving version after each decision (0: the safe start). */
  readonly version: Int32Array;
  readonly gates: { at: number; version: number; status: string; reason: string }[];
  trained: number;
}

const PIPELINE = 'tiers-loop';

export function runTierLoop(o: TierLoopOptions): TierLoopResult {
  const tw = o.world;
  const keep = o.models ?? tw.models.map((_, k) => k);
  const prices = tw.pipeline.agents[0]!.models!.map((m) => m.price);
  const pipelineDoc = {
    defaultTotalTokens: tw.totalTokens,
    defaultStrategy: 'learn',
    agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens, models: keep.map((k) => ({ model: tw.models[k]!, price: prices[k]! })) })),
  };
  const params: LearnedParams = o.params ?? {};
  const decl = worldFeatures(tw.world);
  const ver = <T>(id: string, doc: T, version = 1): Versioned<unknown> => ({ id, version, doc });
  let modelsDoc: Record<string, unknown> | undefined;
  let stateVersion = 1;
  const raw = (): RawControlState => {
    const kinds = {
      pipelines: new Map([[PIPELINE, ver(PIPELINE, pipelineDoc)]]),
      strategies: new Map([['learn', ver('learn', { pipeline: PIPELINE, kind: 'learned', params })]]),
      experiments: new Map(),
      priceOverrides: new Map(),
      features: new Map([[PIPELINE, ver(PIPELINE, decl)]]),
      models: new Map(modelsDoc ? [[PIPELINE, ver(PIPELINE, modelsDoc, stateVersion)]] : []),
    } as unknown as Record<ControlKind, ReadonlyMap<string, Versioned<unknown>>>;
    return { version: stateVersion, kinds };
  };
  let view: ControlView = viewOf(raw());
  const refresh = () => {
    stateVersion++;
    view = viewOf(raw());
  };
  // The kinds as the SDK's local mode builds them (the server's learned kind compiles the same engine code).
  let kinds!: KindLookup;
  const learned = {
    compile: (p: unknown, ctx: { readonly pipeline: Pipeline }): CompiledStrategy =>
      compileLearned(p as LearnedServingParams, ctx.pipeline, { view: () => view, retentionSeconds: 86_400, defaultSplit: defaultSplitOf({ view: () => view, kinds }), kinds: () => kinds }),
  };
  const table: Readonly<Record<string, ReturnType<KindLookup['get']>>> = { ...BUILTIN_ENGINE_KINDS, learned };
  kinds = { get: (k) => (Object.hasOwn(table, k) ? table[k] : undefined) };
  const deps = { kinds, routers: [] };

  const pipeline = view.pipelines.get(PIPELINE)!;
  const agentNames = pipeline.agents.map((a) => a.name);
  const tierAgents = tierAgentsOf(pipeline);
  const trainEvery = params.trainEvery ?? 500;
  const window = params.window ?? 8000;
  const rule = { ...DEFAULT_GATE, ...(params.gateDelta !== undefined ? { delta: params.gateDelta } : {}) };
  const prior = serializeWeights(initialWeights(compileFeatures(decl.features).dim, agentNames.length, pipeline.defaultTotalTokens, mulberry32(1)));
  const rng = mulberry32(o.seed);
  const noise = mulberry32(o.seed + 13);
  const C = o.maxCostUsd ?? tw.maxCostUsd;
  const T = o.totalTokens ?? tw.totalTokens;
  const events: LoggedEvent[] = []; // newest first, as the buffer
  const out: TierLoopResult = { contexts: [], quality: new Float64Array(o.outcomes), cost: new Float64Array(o.outcomes), assign: [], version: new Int32Array(o.outcomes), gates: [], trained: 0 };
  let seq = 0;
  let active: { version: number; tiers: SerializedTierParams; scaling?: FeatureScaling } | undefined;
  let candidate: { version: number; tiers: SerializedTierParams; scaling?: FeatureScaling; proposedAt: number } | undefined;
  const writeDoc = () => {
    const agents = agentNames;
    const sig = compileFeatures(decl.features).signature;
    modelsDoc = {
      pipeline: PIPELINE,
      active: active?.version ?? 0,
      signature: sig,
      agents,
      ...(active ? { weights: prior, kind: 'tiers', tiers: active.tiers, ...(active.scaling ? { scaling: active.scaling } : {}) } : {}),
      activatedAt: 0,
      ...(candidate ? { candidate: { version: candidate.version, createdAt: 0, proposedAt: candidate.proposedAt, signature: sig, agents, weights: prior, kind: 'tiers', tiers: candidate.tiers, ...(candidate.scaling ? { scaling: candidate.scaling } : {}) } } : {}),
      versions: [],
    };
    refresh();
  };

  for (let t = 0; t < o.outcomes; t++) {
    const c = tw.sample(rng);
    const features = tw.features(c);
    const id = `s${o.seed}-${t}`;
    const d = decide(deps, view, { pipeline: PIPELINE, features, totalTokens: T, maxCostUsd: C }, id);
    const budgets = agentNames.map((a) => d.budgets[a]!);
    const assign = agentNames.map((a) => tw.models.indexOf(d.tiers!.models![a]!));
    const res = tw.outcome(c, assign, budgets, noise);
    const record = { ...(d.meta ? { meta: d.meta } : {}), budgets: d.budgets, totalTokens: d.totalTokens, ...(d.tiers?.models ? { models: d.tiers.models } : {}) };
    const policy = loggingPolicyOf(record, pipeline);
    events.unshift({ id, t, s: 'learn', f: d.features, T: d.totalTokens, b: d.budgets, q: res.quality, c: res.cost, ...policy, X: C });
    if (events.length > window) events.length = window;
    out.contexts.push(c);
    out.quality[t] = tw.quality(c, assign, budgets);
    out.cost[t] = tw.plannedCost(assign, budgets);
    out.assign.push(assign);
    out.version[t] = servingModel(view, pipeline).tiers ? (active?.version ?? 0) : 0;
    if ((t + 1) % trainEvery !== 0) continue;
    // A retrain, as TrainingService.train runs it: the warm start is the newest trained version (the pending candidate
    // whatever the gate says, else the serving one); the gate on the pending candidate first.
    const warm = candidate ?? active;
    if (candidate) {
      const m = servingModel(view, pipeline);
      const c0 = m.candidate;
      const since = events.filter((e) => e.t >= candidate!.proposedAt);
      const verdict = gateVerdict(
        tierGateInput(pipeline, params, since, { weights: c0!.weights, encoder: c0!.encoder, tiers: c0!.tiers! }, m.tiers ? { version: m.version, tiers: m.tiers, encoder: m.encoder } : undefined, (e) =>
          defaultTierAction({ view: () => view, kinds: () => kinds }, pipeline, { features: e.f, totalTokens: e.T, ...(e.X !== undefined ? { maxCostUsd: e.X } : {}) }),
        ),
        rule,
        1,
      );
      if (verdict.events < rule.minEvents) continue; // it keeps waiting; nothing is trained over it
      out.gates.push({ at: t + 1, version: candidate.version, status: verdict.pass ? 'passed' : 'refused', reason: verdict.reason });
      if (verdict.pass) active = { version: candidate.version, tiers: candidate.tiers, ...(candidate.scaling ? { scaling: candidate.scaling } : {}) };
      candidate = undefined;
      writeDoc();
    }
    const job = trainTiers(
      { features: decl.features, agents: agentNames, init: prior, ...(warm?.scaling ? { initScaling: warm.scaling } : {}), seed: t + 1 },
      { agents: tierAgents, models: pipeline.agents.map((a) => (a.models ?? []).map((m) => m.model)), needGuess: tierNeedGuess(pipeline), ...(warm ? { init: warm.tiers } : {}) },
      events,
      events.length,
    );
    if (!job.trained || !job.tiers) continue;
    out.trained++;
    candidate = { version: ++seq, tiers: job.tiers, ...(job.scaling ? { scaling: job.scaling } : {}), proposedAt: t + 1 };
    writeDoc();
  }
  return out;
}
