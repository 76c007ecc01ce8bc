import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DecisionRecord } from '../../src/allocation/decisions.js';
import { readDecisionJson } from '../../src/allocation/decisions.js';
import { servingModel, type LearnerMeta } from '../../src/learner/kind.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { contextFeatures, sampleContext, simulateOutcome, worldFeatures, worldPipeline, type World } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest } from './env.js';
import { jsonHttp, type JsonReply } from './http.js';

/**
 * A server (real socket, Redis, BullMQ workers) under its own key prefix, with a hand-written world's pipeline `sim`,
 * its plain feature declaration (no mean/std) and a learned strategy `learn` with `params` as the pipeline's default
 * strategy; `round` allocates one request of a world and reports its outcome over HTTP, `settle` waits until every
 * reported outcome was applied and moves them to the training buffer.
 */
export interface LearnerWorldServer {
  readonly rt: Running;
  readonly learner: LearnerModule;
  readonly http: (method: string, path: string, body?: unknown) => Promise<JsonReply>;
  round(w?: World): Promise<{ readonly id: string; readonly budgets: number[] }>;
  /**
   * One decision whose outcome's quality depends on the arm that served it, not on the split: the learned arm's
   * `learned`, the control's `control` (±0.05); returns the decision's logged learner meta.
   */
  armRound(learned: number, control: number): Promise<LearnerMeta>;
  /** Saves the pipeline's current (untrained) model as a version and activates it (manual: a new guard segment). */
  serveVersion(manual: boolean): Promise<number>;
  settle(): Promise<void>;
  close(): Promise<void>;
}

export async function startLearnerWorld(prefix: string, world: World, params: Record<string, unknown>, rng: () => number): Promise<LearnerWorldServer> {
  const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-learner-models-'));
  const rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: modelsDir });
  const learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  const http = jsonHttp(() => rt.url!);
  let reported = 0;
  assert.equal((await http('PUT', '/v1/pipelines/sim', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/sim/features', plainDeclaration(worldFeatures(world)))).status, 200);
  const s = await http('PUT', '/v1/strategies/learn', { pipeline: 'sim', kind: 'learned', params });
  assert.equal(s.status, 200, s.text);
  assert.equal((await http('PUT', '/v1/pipelines/sim', { ...worldPipeline(world), defaultStrategy: 'learn' })).status, 200);
  return {
    rt,
    learner,
    http,
    async round(w = world) {
      const x = sampleContext(w, rng);
      const a = await http('POST', '/v1/allocations', { pipeline: 'sim', features: contextFeatures(x) });
      assert.equal(a.status, 200, a.text);
      const budgets = w.agents.map((ag) => a.json.budgets[ag.name].tokens as number);
      const out = simulateOutcome(w, 0, x, budgets, rng);
      const o = await http('POST', '/v1/outcomes', { decisionId: a.json.decisionId, quality: out.quality });
      assert.equal(o.status, 202, o.text);
      reported++;
      return { id: a.json.decisionId as string, budgets };
    },
    async armRound(learned, control) {
      const a = await http('POST', '/v1/allocations', { pipeline: 'sim', features: contextFeatures(sampleContext(world, rng)) });
      assert.equal(a.status, 200, a.text);
      const id = a.json.decisionId as string;
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
      const meta = d.meta!.learner as LearnerMeta;
      const q = (meta.x!.a === 1 ? control : learned) + 0.1 * (rng() - 0.5);
      const o = await http('POST', '/v1/outcomes', { decisionId: id, quality: Math.min(1, Math.max(0, q)) });
      assert.equal(o.status, 202, o.text);
      reported++;
      return meta;
    },
    async serveVersion(manual) {
      const view = rt.core.view();
      const model = servingModel(view, view.pipelines.get('sim')!);
      const metrics = { rows: 0, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 0 };
      const saved = await learner.training.registry.save('sim', model.weights, { signature: model.encoder.signature, agents: world.agents.map((ag) => ag.name), metrics });
      await learner.training.registry.activate(saved, { manual });
      return saved.version;
    },
    async settle() {
      const counters = learnerKeys(rt.core.keys, 'sim').counters;
      await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= reported, 300_000);
      await learner.training.ingest('sim');
    },
    async close() {
      await rt.close();
      await dropPrefix(prefix);
      rmSync(modelsDir, { recursive: true, force: true });
    },
  };
}
