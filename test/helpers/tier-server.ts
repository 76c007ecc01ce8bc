import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import type { FeatureEncoder } from '../../src/learner/features.js';
import type { LearnerModule } from '../../src/learner/module.js';
import type { TierWorld } from '../../src/learner/sim/tiers.js';
import type { TierEvent } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest } from './env.js';

/** The running parts a tier HTTP test uses. */
export interface TierServer {
  readonly rt: Running;
  readonly url: string;
  readonly learner: LearnerModule;
}

/**
 * Registers the file's before/after hooks for a server with its workers over a socket (real Redis under `prefix`, a
 * models directory of its own, removed after), and hands the running parts to `set` once it is up.
 */
export function tierServerHooks(prefix: string, set: (s: TierServer) => void): void {
  const modelsDir = mkdtempSync(path.join(tmpdir(), `apportion-${prefix.replace(/[^a-z0-9-]/gi, '')}-models-`));
  let rt: Running | undefined;
  before(async () => {
    rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
    set({ rt, url: rt.url!, learner: rt.modules.find((m) => m.name === 'learner') as LearnerModule });
  });
  after(async () => {
    await rt?.close();
    await dropPrefix(prefix);
    rmSync(modelsDir, { recursive: true, force: true });
  });
}

/** A tier world's pipeline document: its agents' bounds, every agent declaring the world's models. */
export function tierPipelineDoc(tw: TierWorld): { defaultTotalTokens: number; agents: { name: string; minTokens: number; maxTokens: number; models: { model: string }[] }[] } {
  return {
    defaultTotalTokens: tw.totalTokens,
    agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens, models: tw.models.map((model) => ({ model })) })),
  };
}

/**
 * `n` decisions of random (models, split) actions on a tier world, with their sampled quality and planned cost: each
 * agent gets its minimum plus a random share of `spread` tokens, within its maximum.
 */
export function randomTierRows(tw: TierWorld, encoder: FeatureEncoder, n: number, rng: () => number, spread = 8000): TierEvent[] {
  return Array.from({ length: n }, () => {
    const c = tw.sample(rng);
    const assign = tw.assignments[Math.floor(rng() * tw.assignments.length)]!;
    const shares = tw.agents.map(() => 0.2 + rng());
    const sum = shares.reduce((s, v) => s + v, 0);
    const budgets = tw.agents.map((a, i) => Math.min(a.maxTokens, a.minTokens + Math.floor((shares[i]! / sum) * spread)));
    return { x: encoder.encode(tw.features(c)), action: { assign, budgets }, quality: tw.outcome(c, assign, budgets, rng).quality, cost: tw.plannedCost(assign, budgets) };
  });
}
