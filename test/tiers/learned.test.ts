import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import { guardOffset, TIER_TOKEN_SPREAD, tierAgentsOf } from '@apportion/sdk/engine';
import { newDecisionId, readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { loggingPolicyOf } from '../../src/learner/hooks.js';
import { learnerMetaOf, servingModel } from '../../src/learner/kind.js';
import { TRAIN_QUEUE, type LearnerModule } from '../../src/learner/module.js';
import { compileFeatures } from '../../src/learner/features.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import type { SimContext } from '../../src/learner/sim/world.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { curvesOf, initialParams, perturbAround, predictQuality } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { okHttp } from '../helpers/http.js';
import { tierPipelineDoc, tierServerHooks } from '../helpers/tier-server.js';
import { eventually, testPrefix } from '../helpers/env.js';
import { saveTierVersion } from '../helpers/tier-gate-fixture.js';

/**
 * The learned strategy on a pipeline with model tiers, end to end over a real HTTP socket: it chooses each agent's
 * model with its tokens under the request's cost ceiling, logs the joint action's probability, trains a joint
 * (`tiers`) version from the outcomes reported over HTTP, activates it through the gate, and the SDK's local mode
 * answers as the server does. A joint version worse than the default strategy is refused by the gate.
 */
const prefix = testPrefix('tiers-learned');
const tw = loadTierWorld('cheap-suffices');
let rt: Running;
let url: string;
let learner: LearnerModule;

const op = okHttp(() => url);

const pipelineDoc = tierPipelineDoc(tw);

/** One allocation over HTTP and its simulated outcome reported over HTTP. */
async function round(pipeline: string, rng: () => number, noise: () => number, req: { maxCostUsd?: number; totalTokens?: number }): Promise<{ answer: Record<string, any>; c: SimContext }> {
  const c = tw.sample(rng);
  const answer = await op('POST', '/v1/allocations', { pipeline, features: tw.features(c), ...req });
  const assign = tw.agents.map((a) => tw.models.indexOf(answer.budgets[a.name].model));
  assert.ok(assign.every((m) => m >= 0), JSON.stringify(answer.budgets));
  const budgets = tw.agents.map((a) => answer.budgets[a.name].tokens as number);
  const o = tw.outcome(c, assign, budgets, noise);
  await op('POST', '/v1/outcomes', { decisionId: answer.decisionId, quality: o.quality });
  return { answer, c };
}

/** Waits until the pipeline's learner buffer holds `n` outcome events (the outcome worker and the tick ingested them). */
async function settled(pipeline: string, n: number): Promise<void> {
  await eventually(async () => {
    await learner.training.ingest(pipeline);
    return (await learner.training.events(pipeline, n + 10)).length >= n;
  }, 120_000);
}

tierServerHooks(prefix, (s) => {
  ({ rt, url, learner } = s);
});

describe('the learned strategy on a pipeline with model tiers', () => {
  it('trains and activates a joint version from outcomes over HTTP, serves models and tokens under the ceiling, logs the joint propensity, and answers locally as the server does', async () => {
    await op('PUT', '/v1/pipelines/tl', pipelineDoc);
    await op('PUT', '/v1/pipelines/tl/features', worldFeatures(tw.world));
    // Retrains are asked for over HTTP (POST /v1/models/tl/train) at fixed points, so the test does not depend on
    // how fast the trainer child runs on a busy machine.
    await op('PUT', '/v1/strategies/tl-learn', { pipeline: 'tl', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, perturbation: 0.4, gateDelta: 0.05 } });
    await op('PUT', '/v1/pipelines/tl', { ...pipelineDoc, defaultStrategy: 'tl-learn' });
    const rng = mulberry32(5);
    const noise = mulberry32(6);
    const req = { maxCostUsd: tw.maxCostUsd, totalTokens: tw.totalTokens };
    // The safe start: the default strategy's action (uniform on the first models) explored around, models included.
    for (let i = 0; i < 300; i++) await round('tl', rng, noise, req);
    await settled('tl', 300);
    await op('POST', '/v1/models/tl/train');
    const v1 = await eventually(async () => {
      const m = await op('GET', '/v1/models/tl');
      return m.candidate ? m : undefined;
    }, 180_000);
    assert.equal(v1.versions[0].kind, 'tiers', 'a pipeline with model tiers trains a joint version');
    // The candidate's greedy action is mixed into decisions; at the next retrain the gate judges it. A version trained
    // on a few hundred explored decisions may rightly be refused (the draws follow the random decision ids); the
    // retrain that refused it may train the next candidate, judged at a later retrain (at most four retrains here).
    const trainQueue = learner.queues!.find((q) => q.name === TRAIN_QUEUE)!;
    const idle = () => eventually(async () => Object.values(await trainQueue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).every((n) => n === 0), 180_000, 100);
    let outcomes = 300;
    let active: Record<string, any> = {};
    for (let attempt = 0; attempt < 4 && !(active.active > 0); attempt++) {
      for (let i = 0; i < 400; i++) await round('tl', rng, noise, req);
      outcomes += 400;
      await settled('tl', outcomes);
      // The call queues the retrain before it answers; it has run once the queue is idle.
      await op('POST', '/v1/models/tl/train');
      await idle();
      active = await op('GET', '/v1/models/tl');
    }
    assert.ok(active.active > 0, JSON.stringify(active.versions.map((x: any) => ({ version: x.version, gate: x.gate }))));
    assert.equal(active.kind, 'tiers');
    const v = active.versions.find((x: any) => x.version === active.active);
    assert.equal(v.kind, 'tiers');
    assert.equal(v.gate.status, 'passed', JSON.stringify(v.gate));
    assert.ok(v.gate.comparisons.some((c: any) => c.against === 'default'));
    // Served by the active joint version: models chosen with the tokens, within the ceiling, logged exactly.
    const pipeline = rt.core.view().pipelines.get('tl')!;
    const seen = new Map<string, number>();
    let nonFirst = 0;
    let offsets = 0;
    for (let i = 0; i < 200; i++) {
      const { answer } = await round('tl', rng, noise, req);
      assert.ok(answer.costUsd <= tw.maxCostUsd + 1e-9, `${answer.costUsd} within ${tw.maxCostUsd}`);
      const models = tw.agents.map((a) => answer.budgets[a.name].model as string);
      for (const m of models) seen.set(m, (seen.get(m) ?? 0) + 1);
      if (models.some((m) => m !== tw.models[0])) nonFirst++;
      if (i >= 40) continue;
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, answer.decisionId))!) as DecisionRecord;
      const meta = learnerMetaOf(d, pipeline);
      assert.ok(meta && meta.CM, 'the joint action set is read back from the record');
      assert.ok(meta.m > 0 || meta.x?.a === 1 || meta.m === 0);
      assert.ok(Math.abs(meta.P.reduce((s, p) => s + p, 0) - 1) < 1e-6, 'probabilities sum to 1');
      assert.ok(meta.P.every((p) => p > 0));
      assert.equal(meta.p, meta.P[meta.k]);
      assert.deepEqual(meta.C[meta.k], tw.agents.map((a) => answer.budgets[a.name].tokens), 'the logged action is the served budgets');
      assert.deepEqual(meta.CM[meta.k], models, 'and the served models');
      // Every logged action respects the total and the ceiling.
      meta.C.forEach((b, k) => {
        const assign = meta.CM![k]!.map((m) => tw.models.indexOf(m!));
        assert.ok(tw.plannedCost(assign, b) <= tw.maxCostUsd + 1e-9);
        assert.ok(b.reduce((s, x) => s + x, 0) <= tw.totalTokens);
      });
      const policy = loggingPolicyOf(d, pipeline);
      assert.ok(policy.CM && policy.P && policy.k !== undefined);
      assert.deepEqual(policy.CM[policy.k], models);
      // The guard's offset: the serving joint version's predicted reward of the control's action (λ = 0 here).
      const serving = servingModel(rt.core.view(), pipeline);
      if (meta.m > 0 && meta.x && serving.version === meta.m) {
        const anchor = { assign: meta.x.m!, budgets: meta.x.b };
        assert.equal(meta.x.z, guardOffset(predictQuality(curvesOf(serving.tiers!, tierAgentsOf(pipeline), serving.encoder.encode(d.features)), anchor)));
        assert.equal(policy.z, meta.x.z);
        offsets++;
      }
    }
    assert.ok(offsets > 0, 'decisions of the serving joint version log the guard offset');
    assert.ok(nonFirst > 100, `the joint version puts agents on the cheaper model (${nonFirst} of 200 answers; ${JSON.stringify([...seen])})`);
    // Local evaluation answers exactly as the server for the same decision ids (with and without a ceiling). The
    // retrain asked for above goes on after the gate and proposes the next candidate, which changes what serves: the
    // SDK syncs once that job is done, so both answer from the same model document.
    await idle();
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 0, stream: false });
    await sdk.ready();
    const local = await sdk.evaluator();
    const lr = mulberry32(9);
    for (let i = 0; i < 150; i++) {
      const c = tw.sample(lr);
      const r = {
        pipeline: 'tl',
        features: tw.features(c),
        ...(i % 3 === 0 ? { totalTokens: 20_000 + Math.floor(lr() * 100_000) } : { maxCostUsd: 0.03 + lr() * 0.2 }),
        decisionId: newDecisionId(),
      };
      const server = await op('POST', '/v1/allocations', r);
      const { recorded: _a, ...mine } = (await local.allocate(r)) as unknown as Record<string, any>;
      const { recorded: _b, ...theirs } = server;
      assert.deepEqual(mine, theirs, `request ${JSON.stringify(r)}`);
    }
    await sdk.close();
    // With guaranteed token perturbations around the greedy action (tierTokenShare): the server logs them with their
    // share, and local mode still answers as the server does.
    await op('PUT', '/v1/strategies/tl-learn', { pipeline: 'tl', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, perturbation: 0.4, gateDelta: 0.05, tierTokenShare: 0.2 } });
    await eventually(async () => (rt.core.view().strategies.get('tl-learn')?.params as { tierTokenShare?: number } | undefined)?.tierTokenShare === 0.2, 30_000);
    const agents = tierAgentsOf(pipeline);
    let perturbed = 0;
    for (let i = 0; i < 30; i++) {
      const { answer } = await round('tl', rng, noise, req);
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, answer.decisionId))!) as DecisionRecord;
      const lm = d.meta!.learner as { m: number; P: number[]; TC: number[][]; TM: number[][]; ck?: number };
      if (!(lm.m > 0)) continue;
      const perts = perturbAround({ assign: lm.TM[0]!, budgets: lm.TC[0]! }, agents, tw.totalTokens, tw.maxCostUsd, TIER_TOKEN_SPREAD);
      for (const p of perts) {
        const k = lm.TC.findIndex((c, j) => c.every((v, a) => v === p.budgets[a]) && lm.TM[j]!.every((v, a) => v === p.assign[a]));
        assert.ok(k >= 0, 'every perturbation of the greedy action is logged');
        assert.ok(lm.P[k]! >= (0.2 / perts.length) * (lm.ck !== undefined ? 0.9 : 1) - 1e-6, `its probability ${lm.P[k]} holds its share`);
      }
      if (perts.length > 0) perturbed++;
    }
    assert.ok(perturbed > 20, String(perturbed));
    const sdk2 = new Apportion({ url, mode: 'local', maxBuffer: 0, stream: false });
    await sdk2.ready();
    const local2 = await sdk2.evaluator();
    for (let i = 0; i < 60; i++) {
      const r = { pipeline: 'tl', features: tw.features(tw.sample(lr)), maxCostUsd: 0.03 + lr() * 0.2, decisionId: newDecisionId() };
      const server = await op('POST', '/v1/allocations', r);
      const { recorded: _a, ...mine } = (await local2.allocate(r)) as unknown as Record<string, any>;
      const { recorded: _b, ...theirs } = server;
      assert.deepEqual(mine, theirs, `request ${JSON.stringify(r)}`);
    }
    await sdk2.close();
  });

  it('refuses a joint version worse than the default strategy at the activation gate', async () => {
    await op('PUT', '/v1/pipelines/tb', pipelineDoc);
    await op('PUT', '/v1/pipelines/tb/features', worldFeatures(tw.world));
    // No automatic retrain: the gate looks when asked to train.
    await op('PUT', '/v1/strategies/tb-learn', { pipeline: 'tb', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, controlShare: 0 } });
    await op('PUT', '/v1/pipelines/tb', { ...pipelineDoc, defaultStrategy: 'tb-learn' });
    // A joint version that believes the cheap model does everything as well with fewer tokens: it serves every
    // agent on haiku, where the planner and the writer reach far less than on opus.
    const pipeline = rt.core.view().pipelines.get('tb')!;
    const agents = tierAgentsOf(pipeline);
    const enc = compileFeatures(worldFeatures(tw.world).features);
    const bad = initialParams(agents, enc.dim, 5000);
    agents.forEach((_, i) => {
      bad.eta[i]![1] = 8;
      bad.kappa[i]![1] = -2;
    });
    const reg = learner.training.registry;
    const saved = await saveTierVersion(reg, 'tb', enc, pipeline.agents.map((a) => a.name), pipelineDoc.defaultTotalTokens, bad);
    await reg.propose(saved);
    const rng = mulberry32(11);
    const noise = mulberry32(12);
    let cheap = 0;
    for (let i = 0; i < 500; i++) {
      const { answer } = await round('tb', rng, noise, { totalTokens: 30_000 });
      if (tw.agents.every((a) => answer.budgets[a.name].model === tw.models[1])) cheap++;
    }
    assert.ok(cheap > 20, `the candidate's all-haiku action is mixed into decisions (${cheap})`);
    await settled('tb', 500);
    await op('POST', '/v1/models/tb/train');
    const refused = await eventually(async () => {
      const m = await op('GET', '/v1/models/tb');
      const v = m.versions.find((x: any) => x.version === saved.version);
      return v?.gate?.status === 'refused' || v?.gate?.status === 'passed' ? v : undefined;
    }, 60_000);
    assert.equal(refused.gate.status, 'refused', JSON.stringify(refused.gate));
    const d = refused.gate.comparisons.find((c: any) => c.against === 'default');
    assert.ok(d && d.diff < -0.02, JSON.stringify(refused.gate));
    const m = await op('GET', '/v1/models/tb');
    assert.notEqual(m.active, saved.version);
  });
});
