/**
 * Serving cost of a learned decision on a pipeline with model tiers, in process (the engine's `decide`, the learned
 * strategy compiled as the SDK's local mode and the server compile it), against a token-only learned decision on the
 * same pipeline without models, measured in the same run.
 *
 *   node --import tsx bench/tier-decision.ts [--decisions 2000] [--rounds 5]
 *
 * Three setups on the cheap-suffices tier world (3 agents × 2 models, its ceiling and total): `token` (no `models`,
 * an active token version), `tiers` (an active tier version), `tiers+candidate` (and a pending tier candidate,
 * whose greedy action is solved as well). Rounds alternate the setups; each prints µs per decision and the median
 * of the per-round ratios against `token`.
 */
import {
  BUILTIN_ENGINE_KINDS,
  compileLearned,
  decide,
  defaultSplitOf,
  tierAgentsOf,
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
import { compileFeatures } from '../src/learner/features.js';
import { initialWeights, serializeWeights } from '../src/learner/model.js';
import { mulberry32 } from '../src/learner/rng.js';
import { loadTierWorld } from '../src/learner/sim/tiers.js';
import { worldFeatures } from '../src/learner/sim/world.js';
import { initialParams, serializeTierParams } from '../src/learner/tiers-policy.js';
import { flag, median } from './lib.js';

const decisions = Number(flag('decisions', '2000'));
const rounds = Number(flag('rounds', '5'));
const tw = loadTierWorld('cheap-suffices');
const decl = worldFeatures(tw.world);
const enc = compileFeatures(decl.features);
const prices = tw.pipeline.agents[0]!.models!.map((m) => m.price);
const ver = <T>(id: string, doc: T, version = 1): Versioned<unknown> => ({ id, version, doc });

type Setup = 'token' | 'tiers' | 'tiers+candidate';

function setup(kind: Setup): { run: (n: number, salt: number) => number } {
  const P = 'p';
  const withModels = kind !== 'token';
  const pipelineDoc = {
    defaultTotalTokens: tw.totalTokens,
    defaultStrategy: 'learn',
    agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens, ...(withModels ? { models: tw.models.map((model, k) => ({ model, price: prices[k]! })) } : {}) })),
  };
  const prior = serializeWeights(initialWeights(enc.dim, tw.agents.length, tw.totalTokens, mulberry32(1)));
  const agents = tw.agents.map((a) => a.name);
  let tiers: ReturnType<typeof serializeTierParams> | undefined;
  let tiers2: ReturnType<typeof serializeTierParams> | undefined;
  if (withModels) {
    const ta = tw.agents.map(() => ({ min: 0, cap: 0, rates: tw.rates }));
    const p = initialParams(ta, enc.dim, 10_000);
    p.eta.forEach((e, i) => (e[1] = 0.5 + i));
    p.kappa.forEach((k, i) => (k[1] = 0.3 - 0.1 * i));
    tiers = serializeTierParams(p);
    p.eta.forEach((e) => (e[1] = e[1]! - 0.4));
    tiers2 = serializeTierParams(p);
  }
  const modelsDoc = {
    pipeline: P,
    active: 1,
    signature: enc.signature,
    agents,
    weights: prior,
    ...(tiers ? { kind: 'tiers', tiers } : {}),
    activatedAt: 0,
    ...(kind === 'tiers+candidate' ? { candidate: { version: 2, createdAt: 0, proposedAt: 0, signature: enc.signature, agents, weights: prior, kind: 'tiers', tiers: tiers2 } } : {}),
    versions: [],
  };
  const raw: RawControlState = {
    version: 1,
    kinds: {
      pipelines: new Map([[P, ver(P, pipelineDoc)]]),
      strategies: new Map([['learn', ver('learn', { pipeline: P, kind: 'learned', params: {} })]]),
      experiments: new Map(),
      priceOverrides: new Map(),
      features: new Map([[P, ver(P, decl)]]),
      models: new Map([[P, ver(P, modelsDoc)]]),
    } as unknown as Record<ControlKind, ReadonlyMap<string, Versioned<unknown>>>,
  };
  const view: ControlView = viewOf(raw);
  let kinds!: KindLookup;
  const learned = {
    compile: (p: unknown, ctx: { readonly pipeline: Pipeline }): CompiledStrategy =>
      compileLearned(p as LearnedServingParams, ctx.pipeline, { view: () => view, retentionSeconds: 86_400, defaultSplit: defaultSplitOf({ view: () => view, kinds }), kinds: () => kinds }),
  };
  const table: Readonly<Record<string, ReturnType<KindLookup['get']>>> = { ...BUILTIN_ENGINE_KINDS, learned };
  kinds = { get: (k) => (Object.hasOwn(table, k) ? table[k] : undefined) };
  const deps = { kinds, routers: [] };
  const pipeline = view.pipelines.get(P)!;
  if (withModels && tierAgentsOf(pipeline).length !== tw.agents.length) throw new Error('tier agents');
  return {
    run(n, salt) {
      const rng = mulberry32(salt);
      const reqs = Array.from({ length: n }, () => tw.features(tw.sample(rng)));
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const d = decide(deps, view, { pipeline: P, features: reqs[i]!, totalTokens: tw.totalTokens, ...(withModels ? { maxCostUsd: tw.maxCostUsd } : {}) }, `b${salt}-${i}`);
        if (withModels && !d.tiers?.models) throw new Error('no models served');
      }
      return ((performance.now() - t0) * 1000) / n;
    },
  };
}

const setups: Setup[] = ['token', 'tiers', 'tiers+candidate'];
const built = Object.fromEntries(setups.map((s) => [s, setup(s)])) as Record<Setup, ReturnType<typeof setup>>;
for (const s of setups) built[s].run(200, 999); // warm-up
const us: Record<Setup, number[]> = { token: [], tiers: [], 'tiers+candidate': [] };
for (let r = 0; r < rounds; r++) for (const s of r % 2 ? [...setups].reverse() : setups) us[s].push(built[s].run(decisions, r + 1));
console.log(`${decisions} decisions × ${rounds} rounds (cheap-suffices: 3 agents × 2 models, ceiling ${tw.maxCostUsd} USD)`);
for (const s of setups) {
  const ratio = median(us[s].map((v, r) => v / us.token[r]!));
  console.log(`${s.padEnd(16)} median ${median(us[s]).toFixed(1)} µs/decision  (rounds ${us[s].map((v) => v.toFixed(0)).join(' ')})  ratio vs token ${ratio.toFixed(1)}×`);
}
