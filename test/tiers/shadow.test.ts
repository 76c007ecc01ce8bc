import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import { compiledStrategy, isLearned, tierAgentsOf } from '@apportion/sdk/engine';
import { newDecisionId, readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { compileFeatures } from '../../src/learner/features.js';
import { evaluateOffPolicy } from '../../src/learner/ope-service.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { fitTier, initialParams, serializeTierParams } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { okHttp } from '../helpers/http.js';
import { randomTierRows, tierPipelineDoc, tierServerHooks } from '../helpers/tier-server.js';
import { eventually, testPrefix } from '../helpers/env.js';

/**
 * Shadow mode on a pipeline with model tiers, end to end over a real HTTP socket with real Redis: while the default
 * strategy (uniform on the first models) serves, a learned strategy with `shadow: true` logs its joint greedy action —
 * budgets and a model per agent — with its agreement with the served action (tokens and models) and both actions'
 * predicted reward under the joint reward model; GET /v1/pipelines/:id/shadow reports the model agreement, and the
 * SDK's local mode logs the same shadow as the server.
 */
const prefix = testPrefix('tiers-shadow');
const tw = loadTierWorld('cheap-suffices');
const encoder = compileFeatures(worldFeatures(tw.world).features);
let rt: Running;
let url: string;
let learner: LearnerModule;
const op = okHttp(() => url);

/** A joint version fitted on random (models, split) decisions of the world: it knows haiku formats fully. */
function fitted(agents: ReturnType<typeof tierAgentsOf>): { tiers: ReturnType<typeof serializeTierParams>; rows: number } {
  const rng = mulberry32(3);
  const rows = randomTierRows(tw, encoder, 1500, rng);
  const { params } = fitTier(initialParams(agents, encoder.dim, 3000), agents, rows, { steps: 300, lr: 0.03 });
  return { tiers: serializeTierParams(params), rows: rows.length };
}

tierServerHooks(prefix, (s) => {
  ({ rt, url, learner } = s);
});

describe('shadow mode on a pipeline with model tiers', () => {
  it('logs the joint greedy action (budgets and models), its agreement and predicted rewards; the shadow report counts model agreement; local mode logs the same', async () => {
    const doc = tierPipelineDoc(tw);
    await op('PUT', '/v1/pipelines/ts', doc);
    await op('PUT', '/v1/pipelines/ts/features', worldFeatures(tw.world));
    // Not the default: the built-in uniform serves (the first model for every agent); the learned strategy only runs in shadow.
    await op('PUT', '/v1/strategies/ts-shadow', { pipeline: 'ts', kind: 'learned', params: { shadow: true, costWeight: 0.5, trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
    const pipeline = rt.core.view().pipelines.get('ts')!;
    const agents = tierAgentsOf(pipeline);
    const v = fitted(agents);
    const reg = learner.training.registry;
    const saved = await reg.save('ts', initialWeights(encoder.dim, agents.length, doc.defaultTotalTokens, mulberry32(1)), {
      signature: encoder.signature,
      agents: pipeline.agents.map((a) => a.name),
      metrics: { rows: v.rows, steps: 300, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'tiers', costWeight: 0.5, buffer: v.rows },
      kind: 'tiers',
      tiers: v.tiers,
    });
    const gate = { status: 'passed' as const, reason: 'fitted for the test', events: 0, comparisons: [], decidedAt: Date.now() };
    await reg.recordGate('ts', saved.version, gate);
    await reg.activate({ ...saved, gate });
    await eventually(async () => (await op('GET', '/v1/models/ts')).active === saved.version, 30_000);

    const rng = mulberry32(7);
    const noise = mulberry32(8);
    const req = { maxCostUsd: tw.maxCostUsd, totalTokens: tw.totalTokens };
    const N = 200;
    let agreeSum = 0;
    let modelSum = 0;
    let allSame = 0;
    let onHaiku = 0;
    for (let i = 0; i < N; i++) {
      const c = tw.sample(rng);
      const features = tw.features(c);
      const answer = await op('POST', '/v1/allocations', { pipeline: 'ts', features, ...req });
      assert.equal(answer.strategy, '@uniform');
      const served = tw.agents.map((a) => answer.budgets[a.name].tokens as number);
      const servedModels = tw.agents.map((a) => answer.budgets[a.name].model as string);
      const assign = servedModels.map((m) => tw.models.indexOf(m));
      await op('POST', '/v1/outcomes', { decisionId: answer.decisionId, quality: tw.outcome(c, assign, served, noise).quality });
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, answer.decisionId))!) as DecisionRecord;
      const sh = (d.shadow?.learner as Record<string, any> | undefined)?.['ts-shadow'];
      assert.ok(sh, `the shadow strategy's action is logged: ${JSON.stringify(d.shadow)}`);
      // The joint greedy action of the serving tier version under the request's total and ceiling.
      const compiled = compiledStrategy(rt.core.kinds, rt.core.view(), rt.core.view().strategies.get('ts-shadow')!, pipeline);
      assert.ok(isLearned(compiled) && compiled.greedyTier && compiled.predictTier);
      const input = { features: d.features, ...req };
      const g = compiled.greedyTier(input);
      assert.deepEqual(sh.b, g.budgets);
      assert.deepEqual(sh.m, g.models, 'the shadow record names the model per agent');
      assert.ok(tw.plannedCost(sh.m.map((m: string) => tw.models.indexOf(m)), sh.b) <= tw.maxCostUsd + 1e-9, 'within the ceiling');
      const same = sh.m.filter((m: string, j: number) => m === servedModels[j]).length / tw.agents.length;
      assert.equal(sh.modelAgreement, same);
      let dist = 0;
      sh.b.forEach((b: number, j: number) => (dist += Math.abs(b - served[j]!)));
      assert.ok(Math.abs(sh.agreement - (1 - dist / (2 * tw.totalTokens))) < 1e-12);
      // Predicted rewards of the joint reward model: quality − λ·planned cost, on each action's own models.
      assert.equal(sh.predicted, compiled.predictTier(input, g.budgets, g.models));
      assert.equal(sh.servedPredicted, compiled.predictTier(input, served, servedModels));
      assert.notEqual(sh.predicted, compiled.predictTier(input, g.budgets, servedModels), 'the predicted reward depends on the models');
      agreeSum += sh.agreement;
      modelSum += same;
      if (same === 1) allSame++;
      if (sh.m.some((m: string) => m !== tw.models[0])) onHaiku++;
    }
    assert.ok(onHaiku > N / 2, `the joint version puts agents on the cheaper model in shadow (${onHaiku} of ${N})`);

    // The report: token and model agreement, and the off-policy estimate of the joint action.
    await eventually(async () => {
      await learner.training.ingest('ts');
      return (await learner.training.events('ts', N + 10)).length >= N;
    }, 120_000);
    const events = await learner.training.events('ts', N + 10);
    assert.ok(events.every((e) => Array.isArray(e.sM?.['ts-shadow'])), 'the logged events carry the shadow models');
    const r = await op('GET', '/v1/pipelines/ts/shadow?strategy=ts-shadow');
    assert.equal(r.observed, N);
    assert.equal(r.withModels, N);
    assert.ok(Math.abs(r.agreement - agreeSum / N) < 1e-9);
    assert.ok(Math.abs(r.modelAgreement - modelSum / N) < 1e-9, JSON.stringify(r));
    assert.ok(Math.abs(r.sameModels - allSame / N) < 1e-9);
    assert.ok(r.modelAgreement < 0.9);
    // A logged action supports the shadow's joint action only on the same models (the served models were all opus).
    assert.equal(r.ope.events, N);
    assert.ok(r.ope.support <= allSame / N + 1e-9, `support ${r.ope.support} ≤ share with the same models ${allSame / N}`);
    // The estimate values the joint action: decisions that served exactly the shadow's budgets support it only when they
    // also served its models.
    const asShadow = (withModels: boolean) =>
      events.map((e) => ({ ...e, b: Object.fromEntries(tw.agents.map((a, i) => [a.name, e.sh!['ts-shadow']![i]!])), ...(withModels ? { M: e.sM!['ts-shadow']! } : {}) }));
    const ope = (evs: typeof events) => evaluateOffPolicy({ view: rt.core.view(), kinds: rt.core.kinds }, pipeline, 'ts-shadow', evs, { resamples: 50 });
    assert.equal(ope(asShadow(true)).support, 1);
    assert.ok(Math.abs(ope(asShadow(false)).support - allSame / N) < 1e-9, 'the same budgets on other models do not match');

    // Local mode logs the same shadow as the server (records shipped through POST /v1/decisions/batch).
    const errors: unknown[] = [];
    const sdk = new Apportion({ url, mode: 'local', stream: false, onError: (e: unknown) => errors.push(e) });
    await sdk.ready();
    const local = await sdk.evaluator();
    const lr = mulberry32(9);
    const pairs: [string, string][] = [];
    for (let i = 0; i < 20; i++) {
      const r2 = { pipeline: 'ts', features: tw.features(tw.sample(lr)), ...(i % 2 === 0 ? req : { maxCostUsd: 0.03 + lr() * 0.1 }) };
      const server = await op('POST', '/v1/allocations', r2);
      const mine = await local.allocate({ ...r2, decisionId: newDecisionId() });
      pairs.push([server.decisionId, mine.decisionId]);
    }
    await local.flush();
    assert.deepEqual(errors, []);
    assert.equal(local.stats().shipped, pairs.length, JSON.stringify(local.stats()));
    for (const [s, l] of pairs) {
      const ds = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, s))!) as DecisionRecord;
      const dl = JSON.parse((await eventually(() => readDecisionJson(rt.core.redis, rt.core.keys, l)))!) as DecisionRecord;
      assert.ok((ds.shadow?.learner as Record<string, any> | undefined)?.['ts-shadow']?.m, 'the server logs models in shadow');
      assert.deepEqual(dl.shadow, ds.shadow);
    }
    await sdk.close();
  });
});
