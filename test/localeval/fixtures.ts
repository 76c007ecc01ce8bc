import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { initialWeights, serializeWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { FIVE_AGENTS } from '../helpers/env.js';

/**
 * A control plane for comparing local and server answers, generated from a seed: pipelines with every built-in
 * strategy kind, experiments (targeting, layers, a ramp, a holdout, a paused one), a learned strategy with a serving model and a
 * candidate version, one in its safe start, and one whose models the runtime guard took out of service (reverted to
 * the control: the safe start serves, the pending candidate mixed in, the control arm at its share).
 */
export const PIPELINES = ['lv-five', 'lv-learned', 'lv-safe', 'lv-reverted'] as const;

const THREE = {
  defaultTotalTokens: 9000,
  agents: [
    { name: 'planner', priority: 'critical', minTokens: 300, maxTokens: 5000 },
    { name: 'coder', priority: 'standard', minTokens: 500 },
    { name: 'tester', priority: 'background', minTokens: 100, maxTokens: 2500 },
  ],
};
const FOUR = {
  defaultTotalTokens: 12000,
  agents: [
    { name: 'a', minTokens: 200, maxTokens: 6000 },
    { name: 'b', priority: 'critical', minTokens: 200 },
    { name: 'c', minTokens: 0, maxTokens: 3000 },
    { name: 'd', priority: 'background', minTokens: 100, maxTokens: 4000 },
  ],
};
export const SPECS: FeatureSpec[] = [
  { name: 'messageCount', type: 'numeric', transform: 'log' },
  { name: 'tier', type: 'categorical', values: ['free', 'pro', 'team'] },
  { name: 'region', type: 'categorical', hashBuckets: 8 },
  { name: 'document', type: 'tokens' },
];

/** A model document with seeded random weights (what the registry stores when a version serves). */
function modelDoc(seed: number, agents: readonly string[], total: number, version: number) {
  const enc = compileFeatures(SPECS, { messageCount: { center: 1.5, scale: 0.8 }, document: { center: 6, scale: 1.5 } });
  const rng = mulberry32(seed);
  const w = initialWeights(enc.dim, agents.length, total, rng);
  for (const arr of [w.w1, w.w2, w.w3, w.b2]) for (let i = 0; i < arr.length; i++) arr[i]! += (rng() - 0.5) * 0.6;
  return { enc, weights: serializeWeights(w), version };
}

/** `putModel` stores the `models` control document (as the registry does when a version serves). */
export async function setUp(op: (method: string, url: string, body?: unknown) => Promise<unknown>, putModel: (pipeline: string, doc: unknown) => Promise<unknown>): Promise<void> {
  await op('PUT', '/v1/pipelines/lv-five', FIVE_AGENTS);
  await op('PUT', '/v1/strategies/five-uniform', { pipeline: 'lv-five', kind: 'uniform' });
  await op('PUT', '/v1/strategies/five-static', { pipeline: 'lv-five', kind: 'static', params: { shares: { orchestrator: 1, retriever: 2, reasoner: 4, validator: 1 } } });
  await op('PUT', '/v1/strategies/five-estimate', {
    pipeline: 'lv-five',
    kind: 'estimate',
    params: { margin: 1.3, agents: { retriever: { base: 400, per: { documentTokens: 0.4 } }, reasoner: { base: 1500, per: { messageCount: 120 }, task: { code: 1.6, chat: 0.7 } } } },
  });
  await op('PUT', '/v1/strategies/five-pool', { pipeline: 'lv-five', kind: 'priority-pool', params: { needs: { orchestrator: 2500, reasoner: 7000 }, estimate: { agents: { retriever: { base: 800, per: { messageCount: 50 } } } } } });
  await op('PUT', '/v1/pipelines/lv-five', { ...FIVE_AGENTS, defaultStrategy: 'five-static' });
  await op('PUT', '/v1/experiments/lv-hold', { pipeline: 'lv-five', type: 'holdout', coverage: 0.1 });
  await op('POST', '/v1/experiments/lv-hold/start');
  await op('PUT', '/v1/experiments/lv-ab', {
    pipeline: 'lv-five',
    variants: [
      { name: 'control', strategy: 'five-static', weight: 1 },
      { name: 'est', strategy: 'five-estimate', weight: 2 },
      { name: 'pool', strategy: 'five-pool', weight: 1 },
    ],
    control: 'control',
    coverage: 0.8,
    layer: { id: 'main', range: [0, 0.6] },
    targeting: { all: [{ attribute: 'tier', op: 'in', values: ['pro', 'team'] }] },
  });
  await op('POST', '/v1/experiments/lv-ab/start');
  await op('PUT', '/v1/experiments/lv-ramp', {
    pipeline: 'lv-five',
    variants: [
      { name: 'control', strategy: 'five-static', weight: 1 },
      { name: 'uni', strategy: 'five-uniform', weight: 1 },
    ],
    control: 'control',
    coverage: 1,
    layer: { id: 'main', range: [0.6, 1] },
    ramp: { steps: [{ share: 0.3 }, { share: 1 }] },
  });
  await op('POST', '/v1/experiments/lv-ramp/start');
  // Paused, outside layers, between lv-ab and lv-ramp in id order: the units it includes get the pipeline default
  // (never lv-ramp's variants) until it resumes.
  await op('PUT', '/v1/experiments/lv-paused', {
    pipeline: 'lv-five',
    variants: [
      { name: 'control', strategy: 'five-static', weight: 1 },
      { name: 'paused-pool', strategy: 'five-pool', weight: 1 },
    ],
    control: 'control',
    coverage: 0.4,
  });
  await op('POST', '/v1/experiments/lv-paused/start');
  await op('POST', '/v1/experiments/lv-paused/pause');

  await op('PUT', '/v1/pipelines/lv-learned', THREE);
  await op('PUT', '/v1/pipelines/lv-learned/features', { features: SPECS });
  await op('PUT', '/v1/strategies/learned-sq', { pipeline: 'lv-learned', kind: 'learned', params: { explorer: 'squarecb', controlShare: 0.1 } });
  await op('PUT', '/v1/strategies/learned-eps', { pipeline: 'lv-learned', kind: 'learned', params: { explorer: 'epsilon', epsilon: 0.3, upOnly: true } });
  await op('PUT', '/v1/strategies/learned-static', { pipeline: 'lv-learned', kind: 'static', params: { shares: { planner: 2, coder: 3, tester: 1 } } });
  await op('PUT', '/v1/pipelines/lv-learned', { ...THREE, defaultStrategy: 'learned-sq' });
  await op('PUT', '/v1/experiments/lv-learn-ab', {
    pipeline: 'lv-learned',
    variants: [
      { name: 'control', strategy: 'learned-static', weight: 1 },
      { name: 'eps', strategy: 'learned-eps', weight: 1 },
    ],
    control: 'control',
    coverage: 0.5,
  });
  await op('POST', '/v1/experiments/lv-learn-ab/start');
  const names = THREE.agents.map((a) => a.name);
  const active = modelDoc(7, names, THREE.defaultTotalTokens, 3);
  const cand = modelDoc(8, names, THREE.defaultTotalTokens, 4);
  await putModel('lv-learned', {
    pipeline: 'lv-learned',
    active: 3,
    signature: active.enc.signature,
    agents: names,
    weights: active.weights,
    scaling: { messageCount: { center: 1.5, scale: 0.8 }, document: { center: 6, scale: 1.5 } },
    activatedAt: Date.now(),
    candidate: { version: 4, createdAt: Date.now(), signature: cand.enc.signature, agents: names, weights: cand.weights, scaling: { messageCount: { center: 1.2, scale: 1 } } },
    versions: [],
  });

  await op('PUT', '/v1/pipelines/lv-safe', FOUR);
  await op('PUT', '/v1/strategies/safe-learned', { pipeline: 'lv-safe', kind: 'learned', params: { perturbation: 0.8 } });
  await op('PUT', '/v1/strategies/safe-est', { pipeline: 'lv-safe', kind: 'estimate', params: { agents: { b: { base: 2000, per: { messageCount: 300 } } } } });
  await op('PUT', '/v1/pipelines/lv-safe', { ...FOUR, defaultStrategy: 'safe-est' });
  await op('PUT', '/v1/experiments/lv-safe-ab', {
    pipeline: 'lv-safe',
    variants: [
      { name: 'control', strategy: 'safe-est', weight: 1 },
      { name: 'learned', strategy: 'safe-learned', weight: 3 },
    ],
    control: 'control',
    coverage: 0.9,
    targeting: { any: [{ attribute: 'messageCount', op: 'gte', value: 2 }, { attribute: 'unitKey', op: 'prefix', value: 'u1' }] },
  });
  await op('POST', '/v1/experiments/lv-safe-ab/start');

  await op('PUT', '/v1/pipelines/lv-reverted', THREE);
  await op('PUT', '/v1/pipelines/lv-reverted/features', { features: SPECS });
  await op('PUT', '/v1/strategies/reverted-learned', { pipeline: 'lv-reverted', kind: 'learned', params: { controlShare: 0.1 } });
  await op('PUT', '/v1/pipelines/lv-reverted', { ...THREE, defaultStrategy: 'reverted-learned' });
  const gone = modelDoc(9, names, THREE.defaultTotalTokens, 2);
  const next = modelDoc(10, names, THREE.defaultTotalTokens, 3);
  const at = Date.now();
  await putModel('lv-reverted', {
    pipeline: 'lv-reverted',
    active: 0,
    signature: gone.enc.signature,
    agents: names,
    activatedAt: at,
    candidate: { version: 3, createdAt: at, signature: next.enc.signature, agents: names, weights: next.weights, scaling: { messageCount: { center: 1.5, scale: 0.8 } } },
    versions: [],
    guard: { reverts: [{ reason: 'guard', from: 2, to: 0, at, diff: -0.05, ci: [-0.09, -0.01], learned: { n: 900, mean: 0.6 }, control: { n: 60, mean: 0.65, strategy: '@uniform' } }], holdUntil: 0, since: at, toControl: true },
  });
}

// Special tokens' spellings too: user documents about LLMs contain them, and they are counted as text.
const WORDS = ['budget', 'agent', 'token', 'split', 'pipeline', 'ünïcode', '数据', 'x'.repeat(40), 'http://example.com/a/b?c=d', '<|endoftext|>', '<|im_start|>user', '<|fim_middle|>'];

/** One random allocation request (seeded): pipeline, unit, features, total, sometimes a forced strategy. */
export function randomRequest(rng: () => number): { pipeline: string; unitKey?: string; features?: Record<string, string | number | boolean | null>; totalTokens?: number; strategy?: string } {
  const pipeline = PIPELINES[Math.floor(rng() * PIPELINES.length)]!;
  const features: Record<string, string | number | boolean | null> = {};
  if (rng() < 0.8) features.messageCount = Math.floor(rng() * 30);
  if (rng() < 0.7) features.tier = ['free', 'pro', 'team', 'enterprise'][Math.floor(rng() * 4)]!;
  if (rng() < 0.5) features.region = ['eu', 'us', 'apac', 'latam'][Math.floor(rng() * 4)]!;
  if (rng() < 0.3) features.taskType = rng() < 0.5 ? 'code' : 'chat';
  if (rng() < 0.25) features.documentText = Array.from({ length: 1 + Math.floor(rng() * 60) }, () => WORDS[Math.floor(rng() * WORDS.length)]).join(' ');
  else if (rng() < 0.3) features.documentTokens = Math.floor(rng() * 5000);
  if (rng() < 0.05) features.flag = rng() < 0.5;
  const minSum = pipeline === 'lv-five' ? 2100 : pipeline === 'lv-learned' || pipeline === 'lv-reverted' ? 900 : 500;
  const forced = {
    'lv-five': ['five-uniform', 'five-static', 'five-estimate', 'five-pool', '@uniform'],
    'lv-learned': ['learned-sq', 'learned-eps', 'learned-static'],
    'lv-safe': ['safe-learned', 'safe-est'],
    'lv-reverted': ['reverted-learned', '@uniform'],
  }[pipeline];
  return {
    pipeline,
    ...(rng() < 0.85 ? { unitKey: `u${Math.floor(rng() * 2000)}` } : {}),
    ...(Object.keys(features).length > 0 ? { features } : {}),
    ...(rng() < 0.6 ? { totalTokens: minSum + Math.floor(rng() * 30000) } : {}),
    ...(rng() < 0.1 ? { strategy: forced[Math.floor(rng() * forced.length)]! } : {}),
  };
}
