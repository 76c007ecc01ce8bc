import type { Tf } from '../backend.js';
import { buildTrainingData, type LoggedEvent } from '../events.js';
import { compileFeatures, type FeatureEncoder } from '../features.js';
import { forward, initialWeights, type ModelWeights } from '../model.js';
import { decide, greedyBudgets, type ExploreOptions } from '../policy.js';
import { mulberry32 } from '../rng.js';
import { trainModel, type TrainOptions } from '../trainer.js';
import {
  bestStaticShares,
  contextFeatures,
  expectedQuality,
  oracleBudgets,
  phaseAt,
  sampleContext,
  simulateOutcome,
  staticBudgets,
  uniformBudgets,
  worldFeatures,
  type SimContext,
  type World,
} from './world.js';

/**
 * The learning loop in-process (same policy, dataset and trainer code as the service, no HTTP): for
 * benches and tests that need tens of thousands of outcomes quickly.
 */
export interface LoopOptions {
  readonly world: World;
  readonly outcomes: number;
  readonly seed: number;
  readonly explore: ExploreOptions;
  /** Retrain every this many outcomes. Default 500. */
  readonly trainEvery?: number;
  /** Train on at most this many newest events. Default 8000. */
  readonly window?: number;
  readonly halfLife?: number;
  readonly train?: TrainOptions;
  /** Evaluate the greedy policy every this many outcomes. Default 1000. */
  readonly checkpointEvery?: number;
  /** Held-out contexts for evaluation. Default 1000. */
  readonly evalContexts?: number;
}

export interface Checkpoint {
  readonly outcomes: number;
  readonly phase: 0 | 1;
  /** Mean expected (noise-free) quality of the greedy learned policy, the oracle, uniform and best static. */
  readonly learned: number;
  readonly oracle: number;
  readonly uniform: number;
  readonly bestStatic: number;
  /** Mean quality of the served (exploring) decisions since the previous checkpoint. */
  readonly served: number;
}

export interface Evaluation {
  readonly contexts: readonly SimContext[];
  readonly oracle: number[];
  readonly uniform: number[];
  readonly bestStatic: number[];
  readonly staticShares: number[];
}

export function prepareEvaluation(world: World, phase: 0 | 1, contexts: readonly SimContext[], total = world.totalTokens): Evaluation {
  const staticShares = bestStaticShares(world, phase, contexts.slice(0, 400), total);
  return {
    contexts,
    oracle: contexts.map((x) => expectedQuality(world, phase, x, oracleBudgets(world, phase, x, total))),
    uniform: contexts.map((x) => expectedQuality(world, phase, x, uniformBudgets(world, total))),
    bestStatic: contexts.map((x) => expectedQuality(world, phase, x, staticBudgets(world, staticShares, total))),
    staticShares,
  };
}

export function policyAgents(world: World) {
  return world.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens }));
}

/** Expected quality of the greedy learned split per evaluation context, at `total`. */
export function learnedValues(world: World, phase: 0 | 1, weights: ModelWeights, encoder: FeatureEncoder, contexts: readonly SimContext[], total = world.totalTokens): number[] {
  const agents = policyAgents(world);
  return contexts.map((x) => expectedQuality(world, phase, x, greedyBudgets(forward(weights, encoder.encode(contextFeatures(x))), agents, total)));
}

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;

export interface LoopResult {
  readonly checkpoints: Checkpoint[];
  readonly weights: ModelWeights;
  readonly encoder: FeatureEncoder;
  readonly events: LoggedEvent[];
  readonly evaluations: readonly [Evaluation, Evaluation | undefined];
  readonly trainMs: number[];
}

export async function runLoop(tf: Tf, opts: LoopOptions, onCheckpoint?: (c: Checkpoint) => void): Promise<LoopResult> {
  const { world } = opts;
  const rng = mulberry32(opts.seed);
  const evalRng = mulberry32(opts.seed ^ 0x9e3779b9);
  const encoder = compileFeatures(worldFeatures(world).features);
  const agents = policyAgents(world);
  const names = world.agents.map((a) => a.name);
  const contexts = Array.from({ length: opts.evalContexts ?? 1000 }, () => sampleContext(world, evalRng));
  const evaluations: [Evaluation, Evaluation | undefined] = [prepareEvaluation(world, 0, contexts), world.drift ? prepareEvaluation(world, 1, contexts) : undefined];
  let weights = initialWeights(encoder.dim, names.length, world.totalTokens, mulberry32(opts.seed + 1));
  const events: LoggedEvent[] = [];
  const checkpoints: Checkpoint[] = [];
  const trainMs: number[] = [];
  const every = opts.trainEvery ?? 500;
  const cpEvery = opts.checkpointEvery ?? 1000;
  let servedSum = 0;
  let servedN = 0;
  const checkpoint = (t: number) => {
    const phase = phaseAt(world, t);
    const ev = evaluations[phase]!;
    const c: Checkpoint = {
      outcomes: t,
      phase,
      learned: mean(learnedValues(world, phase, weights, encoder, contexts)),
      oracle: mean(ev.oracle),
      uniform: mean(ev.uniform),
      bestStatic: mean(ev.bestStatic),
      served: servedN ? servedSum / servedN : NaN,
    };
    servedSum = 0;
    servedN = 0;
    checkpoints.push(c);
    onCheckpoint?.(c);
  };
  checkpoint(0);
  for (let t = 0; t < opts.outcomes; t++) {
    const phase = phaseAt(world, t);
    const x = sampleContext(world, rng);
    const f = contextFeatures(x);
    const dec = decide(forward(weights, encoder.encode(f)), agents, world.totalTokens, opts.explore, rng);
    const out = simulateOutcome(world, phase, x, dec.budgets, rng);
    servedSum += expectedQuality(world, phase, x, dec.budgets);
    servedN++;
    const b: Record<string, number> = {};
    names.forEach((a, i) => (b[a] = dec.budgets[i]!));
    events.push({ id: String(t), t, s: 'learned', f, T: world.totalTokens, b, q: out.quality, c: null, C: dec.candidates, P: dec.probs, k: dec.chosen });
    if ((t + 1) % every === 0) {
      const recent = events.slice(-(opts.window ?? 8000)).reverse();
      const data = buildTrainingData(recent, encoder, names, { costWeight: 0, ...(opts.halfLife !== undefined ? { halfLife: opts.halfLife } : {}) });
      const res = await trainModel(tf, data, weights, { seed: opts.seed + t, yieldToEventLoop: false, ...opts.train });
      weights = res.weights;
      trainMs.push(res.metrics.ms);
    }
    if ((t + 1) % cpEvery === 0) checkpoint(t + 1);
  }
  return { checkpoints, weights, encoder, events, evaluations, trainMs };
}
