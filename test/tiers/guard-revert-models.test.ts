import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tierAgentsOf, tierModelIds, tierNeedGuess } from '@apportion/sdk/engine';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { compileFeatures } from '../../src/learner/features.js';
import { learnerMetaOf } from '../../src/learner/kind.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { initialParams, serializeTierParams } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { jsonHttp, okHttp } from '../helpers/http.js';
import { tierPipelineDoc, tierServerHooks } from '../helpers/tier-server.js';
import { eventually, testPrefix } from '../helpers/env.js';

/**
 * The runtime guard's revert on a pipeline with model tiers picks a version by the rule serving applies: the features,
 * the agents AND the candidate models it was fitted for. Version 1 was fitted while every agent declared models
 * {A, B}; the pipeline then declares {A, C} and version 2, fitted for those, serves and does worse than the control.
 * Version 1 served before and was never reverted, but it is fitted for models the pipeline no longer has (serving
 * refuses it): the guard reverts to the control strategy, not to version 1. Real Redis, HTTP, the service's guard.
 */
const prefix = testPrefix('tiers-guard-models');
const tw = loadTierWorld('cheap-suffices');
let rt: Running;
let url: string;
let learner: LearnerModule;

const op = okHttp(() => url);
const call = jsonHttp(() => url);

tierServerHooks(prefix, (s) => {
  ({ rt, url, learner } = s);
});

/** A tier version for the pipeline as it is now (its candidate models recorded), saved and activated as an operator's rollback does. */
async function activateTierVersion(pipelineId: string): Promise<number> {
  const pipeline = rt.core.view().pipelines.get(pipelineId)!;
  const encoder = compileFeatures(worldFeatures(tw.world).features);
  const reg = learner.training.registry;
  const saved = await reg.save(pipelineId, initialWeights(encoder.dim, pipeline.agents.length, pipeline.defaultTotalTokens, mulberry32(1)), {
    signature: encoder.signature,
    agents: pipeline.agents.map((a) => a.name),
    metrics: { rows: 1000, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0.01, holdoutVariance: 0, backend: 'tiers', costWeight: 0, buffer: 1000 },
    kind: 'tiers',
    tiers: { ...serializeTierParams(initialParams(tierAgentsOf(pipeline), encoder.dim, tierNeedGuess(pipeline))), models: tierModelIds(pipeline) },
  });
  await reg.activate(saved, { manual: true });
  return saved.version;
}

describe('the runtime guard on a pipeline whose candidate models changed', () => {
  it('does not revert to an earlier version fitted for other models: it reverts to the control strategy', async () => {
    const models = tw.models.slice(0, 2);
    const docAB = tierPipelineDoc({ ...tw, models });
    await op('PUT', '/v1/pipelines/tg', docAB);
    await op('PUT', '/v1/pipelines/tg/features', worldFeatures(tw.world));
    // A large control share so the guard has both arms after few decisions; no retrains, no hold.
    await op('PUT', '/v1/strategies/tg-learn', { pipeline: 'tg', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, controlShare: 0.5, guardHoldOutcomes: 0 } });
    await op('PUT', '/v1/pipelines/tg', { ...docAB, defaultStrategy: 'tg-learn' });

    // Version 1: fitted for {A, B}; it serves.
    const v1 = await activateTierVersion('tg');
    assert.equal(v1, 1);
    // The pipeline now declares {A, C} (same agents, same features): version 1 no longer fits it.
    const modelC = 'gpt-4o';
    const docAC = {
      ...docAB,
      agents: docAB.agents.map((a) => ({ ...a, models: [{ model: models[0]! }, { model: modelC }] })),
      defaultStrategy: 'tg-learn',
    };
    await op('PUT', '/v1/pipelines/tg', docAC);
    await eventually(async () => tierModelIds(rt.core.view().pipelines.get('tg')!).every((m) => m[1] === modelC), 30_000);
    // Version 2: fitted for {A, C}; it serves (a manual activation starts the guard's segment).
    const v2 = await activateTierVersion('tg');
    assert.equal(v2, 2);
    const listed = await op('GET', '/v1/models/tg');
    assert.deepEqual(
      listed.versions.map((v: { version: number; activatedAt?: number; reverted?: unknown }) => [v.version, v.activatedAt !== undefined, v.reverted === undefined]),
      [
        [2, true, true],
        [1, true, true],
      ],
      'version 1 served before and was never reverted',
    );

    // Version 2 does worse than the control: the control arm's decisions get high quality, the learned arm's low
    // (seeded noise). Decisions are made until the guard (on the service's tick) reverts version 2, or 160 of them.
    const noise = mulberry32(17);
    const rng = mulberry32(18);
    let served = 0;
    for (let i = 0; i < 2000 && served < 160 && !learner.training.registry.doc('tg')?.guard?.reverts.length; i++) {
      const answer = await op('POST', '/v1/allocations', { pipeline: 'tg', features: tw.features(tw.sample(rng)), totalTokens: tw.totalTokens });
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, answer.decisionId))!) as DecisionRecord;
      const meta = learnerMetaOf(d, rt.core.view().pipelines.get('tg')!);
      assert.ok(meta?.x, 'the decision carries the control arm');
      const control = meta.x.a === 1;
      if (meta.m === v2) served++;
      const quality = Math.min(1, Math.max(0, (control ? 0.85 : 0.35) + (noise() - 0.5) * 0.2));
      await op('POST', '/v1/outcomes', { decisionId: answer.decisionId, quality });
    }
    assert.ok(served >= 60, `${served} decisions by version 2`);

    // The guard (run on the service's tick; also called here) finds version 2 worse and reverts it.
    const doc = await eventually(async () => {
      await learner.training.ingest('tg');
      await learner.guard.check('tg');
      const d = learner.training.registry.doc('tg');
      return d?.guard?.reverts.length ? d : undefined;
    }, 120_000);
    const revert = doc.guard!.reverts[0]!;
    assert.equal(revert.from, v2);
    assert.equal(revert.to, 0, `reverted to ${revert.to}: version 1 is fitted for models the pipeline no longer declares`);
    assert.equal(doc.active, 0);
    assert.equal(doc.guard!.toControl, true);
    const after = await op('GET', '/v1/models/tg');
    assert.equal(after.active, null, 'no model serves');
    assert.equal(after.serving, 'default-strategy');
    assert.equal(after.versions.find((v: { version: number }) => v.version === 1).reverted, undefined, 'version 1 is untouched');
  });

  it('refuses a rollback by the same rule: a version fitted for other models, or a token version on a pipeline with model tiers (409)', async () => {
    const pipeline = rt.core.view().pipelines.get('tg')!;
    const encoder = compileFeatures(worldFeatures(tw.world).features);
    // Version 1: fitted for {A, B}; the pipeline declares {A, C}.
    const old = await call('POST', '/v1/models/tg/rollback', { version: 1 });
    assert.equal(old.status, 409, old.text);
    assert.equal(old.json.code, 'MODEL_INCOMPATIBLE');
    assert.match(old.json.message, /candidate models/);
    // A token version with the pipeline's features and agents (as saved before the pipeline declared models): serving
    // would not serve it as a tier version (the safe start's prior would, while the model list named it).
    const tokens = await learner.training.registry.save('tg', initialWeights(encoder.dim, pipeline.agents.length, pipeline.defaultTotalTokens, mulberry32(2)), {
      signature: encoder.signature,
      agents: pipeline.agents.map((a) => a.name),
      metrics: { rows: 1000, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0.01, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 1000 },
      kind: 'tokens',
    });
    const r = await call('POST', '/v1/models/tg/rollback', { version: tokens.version });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.json.code, 'MODEL_INCOMPATIBLE');
    assert.match(r.json.message, /token version/);
    assert.equal(learner.training.registry.doc('tg')!.active, 0, 'nothing was activated');
    // Version 2 fits: the operator may serve it again.
    const ok = await call('POST', '/v1/models/tg/rollback', { version: 2 });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.active, 2);
  });
});
