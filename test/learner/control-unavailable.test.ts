import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import type { LightMyRequestResponse } from 'fastify';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { StrategyKind } from '../../src/strategies/types.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/**
 * The runtime guard's control arm is the pipeline's default strategy. When it cannot allocate a request (here: a kind
 * that throws for requests with `boom`), the learned arm serves the request alone: that is counted in /metrics, in
 * GET /v1/models/:pipeline `runtimeGuard.controlUnavailable`, and warned about (rate-limited), instead of silently.
 */
const prefix = testPrefix('control-unavailable');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const world = loadWorld('support-basic');
const rng = mulberry32(7);
let rt: Running;
let learner: LearnerModule;

const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

const dropped = async () => {
  const text = (await call('GET', '/metrics')).body;
  return Number(/^apportion_learner_control_unavailable_total (\S+)$/m.exec(text)?.[1] ?? NaN);
};

/** Allocates with the learned strategy (reporting an outcome unless `boom`); answers the decision's learner meta. */
async function round(boom: boolean): Promise<LearnerMeta> {
  const x = sampleContext(world, rng);
  const a = await call('POST', '/v1/allocations', { pipeline: 'cu', strategy: 'learn', features: { ...contextFeatures(x), ...(boom ? { boom: true } : {}) } });
  assert.equal(a.statusCode, 200, a.body);
  const { decisionId, budgets } = a.json() as { decisionId: string; budgets: Record<string, { tokens: number }> };
  if (!boom) {
    const out = simulateOutcome(world, 0, x, world.agents.map((ag) => budgets[ag.name]!.tokens), rng);
    assert.equal((await call('POST', '/v1/outcomes', { decisionId, quality: out.quality })).statusCode, 202);
  }
  const d = JSON.parse((await eventually(() => readDecisionJson(rt.core.redis, rt.core.keys, decisionId)))!) as DecisionRecord;
  return d.meta!.learner as LearnerMeta;
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_MODELS_DIR: modelsDir });
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  const uniform = rt.core.kinds.get('uniform')!;
  const flaky: StrategyKind<Record<string, never>> = {
    kind: 'flaky-test',
    paramsSchema: Type.Object({}),
    compile(params, ctx) {
      const inner = uniform.compile(params, ctx);
      return {
        allocate(input) {
          if (input.features.boom === true) throw new Error('boom: this request cannot be served');
          return inner.allocate(input);
        },
      };
    },
  };
  rt.core.kinds.register(flaky);
  assert.equal((await call('PUT', '/v1/pipelines/cu', worldPipeline(world))).statusCode, 200);
  assert.equal((await call('PUT', '/v1/pipelines/cu/features', plainDeclaration(worldFeatures(world)))).statusCode, 200);
  const f = await call('PUT', '/v1/strategies/flaky', { pipeline: 'cu', kind: 'flaky-test' });
  assert.equal(f.statusCode, 200, f.body);
  assert.equal((await call('PUT', '/v1/pipelines/cu', { ...worldPipeline(world), defaultStrategy: 'flaky' })).statusCode, 200);
  const s = await call('PUT', '/v1/strategies/learn', { pipeline: 'cu', kind: 'learned', params: { controlShare: 0.3, gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0 } });
  assert.equal(s.statusCode, 200, s.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('the runtime guard’s control arm when the control cannot allocate', () => {
  it('is counted in /metrics and in the model document’s runtimeGuard, never silently dropped', async () => {
    const m0 = await dropped();
    assert.equal(m0, 0);
    const served = await round(false);
    assert.equal(served.x?.c, 'flaky', 'the control arm is the default strategy');
    // During the safe start: the control is dropped for a request it cannot serve, and counted.
    const boom = await round(true);
    assert.equal(boom.x, undefined);
    assert.equal(await dropped(), 1);
    // A trained version serving: the runtime guard's view says how many decisions had no control arm, and why.
    for (let i = 0; i < 150; i++) await round(false);
    await eventually(async () => (await learner.training.events('cu', 1000)).length >= 150 || (await learner.training.ingest('cu'), false), 300_000, 200);
    assert.equal((await call('POST', '/v1/models/cu/train')).statusCode, 202);
    await eventually(async () => ((await call('GET', '/v1/models/cu')).json().active as number) >= 1, 180_000, 200);
    for (let i = 0; i < 40; i++) await round(false);
    for (let i = 0; i < 3; i++) assert.equal((await round(true)).x, undefined);
    assert.equal(await dropped(), 4);
    await learner.training.ingest('cu');
    await learner.guard.check('cu');
    const g = await eventually(async () => {
      const r = (await call('GET', '/v1/models/cu')).json().runtimeGuard;
      return r?.controlUnavailable?.decisions === 4 ? r : undefined;
    }, 30_000);
    assert.equal(g.controlUnavailable.last.version, g.version);
    assert.match(g.controlUnavailable.last.reason, /strategy "flaky" failed: boom/);
  });
});
