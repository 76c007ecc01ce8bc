import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { DEFAULT_DRIFT, forgetSpan, forgetWeight, type DriftRule } from '../../src/learner/drift.js';
import { buildTrainingData, decodeEvents, type LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures, fitScaling } from '../../src/learner/features.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { deserializeWeights, initialWeights, rescaleInputs, serializeWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateWorld, plainDeclaration } from '../../src/learner/sim/family.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, uniformBudgets, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import { trainJob } from '../../src/learner/train-process.js';
import { trainModel } from '../../src/learner/trainer.js';
import { TrainingService } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { decisionsOf, dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * Drift recovery's forgetting (drift.ts DriftRule.forgetAfter …): the factor on the training weight of events logged
 * before a detection (ramp, floor), the span it applies to (nothing without a detection, without the second check's
 * agreement when forgetConfirm asks for it, nothing before the first version cleared the gate with forgetKeepStart),
 * the rows it changes (events.ts buildTrainingData), and the service's trainer applying the same span and weights
 * as the loop (sim/loop.ts): TrainingService.checkDrift → the train job's `forget` → its training rows.
 */
const FORGET: DriftRule = { ...DEFAULT_DRIFT, forgetAfter: 2000, forgetTo: 0.25, forgetRamp: 1000 };

describe('forgetting: weights of events before a detection', () => {
  it('is off by default: DEFAULT_DRIFT forgets nothing at any distance from a detection', () => {
    for (const since of [0, 1999, 2000, 5000, 1e6]) assert.equal(forgetWeight(since), 1);
    assert.equal(forgetSpan({ detectedAt: 100, since: 1e6, firstServedAt: 0, confirmed: true }), undefined);
  });

  it('falls linearly from 1 to forgetTo over forgetRamp outcomes from forgetAfter on, and stays at the floor', () => {
    assert.equal(forgetWeight(0, FORGET), 1);
    assert.equal(forgetWeight(1999, FORGET), 1);
    assert.equal(forgetWeight(2000, FORGET), 1);
    assert.equal(forgetWeight(2250, FORGET), 1 - 0.75 * 0.25);
    assert.equal(forgetWeight(2500, FORGET), 0.625);
    assert.equal(forgetWeight(3000, FORGET), 0.25);
    assert.equal(forgetWeight(9000, FORGET), 0.25);
    // Without a ramp: the floor at once; forgetTo defaults to 0.25.
    assert.equal(forgetWeight(2000, { ...DEFAULT_DRIFT, forgetAfter: 2000 }), 0.25);
    assert.equal(forgetWeight(1999, { ...DEFAULT_DRIFT, forgetAfter: 2000 }), 1);
  });

  it('forgets nothing without a detection, nor (forgetConfirm) without the second check, nor (forgetKeepStart) before the first version served, nor (forgetOnRetire) before a retirement', () => {
    assert.equal(forgetSpan({ detectedAt: undefined, since: 0, firstServedAt: 0 }, FORGET), undefined);
    assert.deepEqual(forgetSpan({ detectedAt: 4500, since: 2500, firstServedAt: 1000 }, FORGET), { from: -Infinity, before: 4500, weight: 0.625 });
    const confirm = { ...FORGET, forgetConfirm: 1 };
    assert.equal(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000, confirmed: false }, confirm), undefined);
    assert.deepEqual(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000, confirmed: true }, confirm), { from: -Infinity, before: 4500, weight: 0.25 });
    const keep = { ...FORGET, forgetKeepStart: 1 };
    assert.deepEqual(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000 }, keep), { from: 1000, before: 4500, weight: 0.25 });
    // A detection while the safe start still served (no version had cleared the gate, or one did only after it): nothing.
    assert.equal(forgetSpan({ detectedAt: 1500, since: 3000, firstServedAt: undefined }, keep), undefined);
    assert.equal(forgetSpan({ detectedAt: 1500, since: 3000, firstServedAt: 5750 }, keep), undefined);
    // forgetOnRetire: only once drift recovery retired the serving version since the detection.
    const onRetire = { ...FORGET, forgetOnRetire: 1 };
    assert.equal(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000 }, onRetire), undefined);
    assert.equal(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000, retired: false }, onRetire), undefined);
    assert.deepEqual(forgetSpan({ detectedAt: 4500, since: 3000, firstServedAt: 1000, retired: true }, onRetire), { from: -Infinity, before: 4500, weight: 0.25 });
  });

  it('multiplies the training weight of the events in the span only', () => {
    const world = loadWorld('support-basic');
    const rng = mulberry32(3);
    const names = world.agents.map((a) => a.name);
    const events: LoggedEvent[] = Array.from({ length: 300 }, (_, i) => {
      const x = sampleContext(world, rng);
      const b = uniformBudgets(world, world.totalTokens);
      return { id: `e${i}`, t: 299 - i, s: 'learn', f: contextFeatures(x), T: world.totalTokens, b: Object.fromEntries(names.map((a, j) => [a, b[j]!])), q: simulateOutcome(world, 0, x, b, rng).quality, c: null };
    });
    const enc = compileFeatures(plainDeclaration(worldFeatures(world)).features);
    const plain = buildTrainingData(events, enc, names, { costWeight: 0, halfLife: 500 });
    const forgot = buildTrainingData(events, enc, names, { costWeight: 0, halfLife: 500, forget: { from: 50, before: 200, weight: 0.25 } });
    assert.deepEqual(forgot.x, plain.x);
    assert.deepEqual(forgot.r, plain.r);
    events.forEach((e, i) => {
      const f = e.t >= 50 && e.t < 200 ? 0.25 : 1;
      assert.equal(forgot.w[i], Math.fround(plain.w[i]! * f), `event t=${e.t}`);
    });
  });
});

describe('forgetting in the simulation loop', () => {
  it('trains the versions from forgetAfter outcomes after a detection on with the span forgetSpan gives, and none before', async () => {
    const { tf } = await loadTf();
    const rule: DriftRule = { ...DEFAULT_DRIFT, forgetAfter: 250, forgetTo: 0.25, forgetRamp: 500 };
    // Generated world 4 (a dev seed) changing at outcome 1,500: the change is detected at the retrain of outcome 1,750.
    // A version at every retrain: the gate's refusals do not back the next one off here (candidateBackoffGate, which
    // skips the retrain of outcome 2,500 on this world), so each retrain after the detection shows its span.
    const res = await runLoop(tf, { world: generateWorld(4, { driftAt: 1500 }), outcomes: 2500, seed: 4, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 }, evalContexts: 0, checkpointEvery: 2500, driftRecovery: rule, candidateBackoffGate: false });
    assert.deepEqual(res.detected, [1750]);
    for (const v of res.versions) {
      // A version is trained at outcome v.at, after that retrain's check: the detection at 1,750 counts from then.
      const det = v.at >= 1750 ? 1750 : undefined;
      assert.deepEqual(v.forget, forgetSpan({ detectedAt: det, since: det === undefined ? 0 : v.at - det, firstServedAt: undefined }, rule), `version ${v.version} at ${v.at}`);
    }
    assert.deepEqual(
      res.versions.filter((v) => v.forget).map((v) => [v.at, v.forget!.before, v.forget!.weight]),
      [
        [2250, 1750, 0.625],
        [2500, 1750, 0.25],
      ],
    );
  });
});

const prefix = testPrefix('learner-drift-forget');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-forget-models-'));
let rt: Running;
const http = jsonHttp(() => rt.url!);

describe('forgetting in the service trainer (real Redis)', () => {
  const world = loadWorld('support-basic');
  const names = world.agents.map((a) => a.name);
  const decl = plainDeclaration(worldFeatures(world));
  const t0 = 1_700_000_000_000;
  const N = 1200;

  before(async () => {
    rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
    assert.equal((await http('PUT', '/v1/pipelines/fg', worldPipeline(world))).status, 200);
    assert.equal((await http('PUT', '/v1/pipelines/fg/features', decl)).status, 200);
    const put = await http('PUT', '/v1/strategies/learn', { pipeline: 'fg', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    // N logged events straight into the training buffer (newest at the head), decided one second apart.
    const rng = mulberry32(11);
    const lk = learnerKeys(rt.core.keys, 'fg');
    const raw: string[] = [];
    for (let i = 0; i < N; i++) {
      const x = sampleContext(world, rng);
      const b = uniformBudgets(world, world.totalTokens).map((v) => Math.round(v * (0.5 + rng())));
      const ev: LoggedEvent = { id: `d${i}`, t: t0 + i * 1000, s: 'learn', f: contextFeatures(x), T: world.totalTokens, b: Object.fromEntries(names.map((a, j) => [a, b[j]!])), q: simulateOutcome(world, 0, x, b, rng).quality, c: null };
      raw.push(JSON.stringify(ev));
    }
    await rt.core.redis.lpush(lk.buffer, ...raw);
    // A change detected at outcome 600 (decision time t0 + 600 s); the first version cleared the gate at t0 + 100 s.
    await rt.core.redis.hset(lk.counters, 'outcomes', N, 'changeAt', 500, 'changeTs', t0 + 500_000, 'detectedAt', 600, 'detectedTs', t0 + 600_000, 'detectedVersion', 1, 'firstServedTs', t0 + 100_000);
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('forgets the span the loop forgets, with its weight, and its train job weighs those rows as buildTrainingData does', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), { epochs: 1 }, false);
    const pipeline = rt.core.view().pipelines.get('fg')!;
    const params = { trainEvery: 1_000_000 };
    // Off by default: no span.
    assert.equal((await training.checkDrift(pipeline, params, N)).forget, undefined);
    const rule: DriftRule = { ...DEFAULT_DRIFT, forgetAfter: 200, forgetTo: 0.25, forgetRamp: 800, forgetKeepStart: 1 };
    training.drift = rule;
    const change = await training.checkDrift(pipeline, params, N);
    // 600 outcomes after the detection: 1 − 0.75 × 400/800 on the events decided in [first served, detection).
    const expected = forgetSpan({ detectedAt: t0 + 600_000, since: N - 600, firstServedAt: t0 + 100_000 }, rule);
    assert.deepEqual(expected, { from: t0 + 100_000, before: t0 + 600_000, weight: 0.625 });
    assert.deepEqual(change.forget, expected);
    // A retrain records the weight on the version it trains.
    const r = await training.train('fg');
    assert.equal(r.trained, true, r.reason);
    assert.equal(r.model?.metrics.preChangeWeight, 0.625);

    // The train job trains on the rows buildTrainingData builds with the span (and not on the unforgotten ones).
    const lk = learnerKeys(rt.core.keys, 'fg');
    const init = initialWeights(compileFeatures(decl.features).dim, names.length, world.totalTokens, mulberry32(1));
    const job = { redisUrl: rt.core.config.redisUrl, redisClusterNodes: rt.core.config.redisClusterNodes, bufferKey: lk.buffer, window: 8000, features: decl.features, agents: names, costWeight: 0, halfLife: 1000, init: serializeWeights(init), seed: 5, train: { epochs: 1 } };
    const withForget = await trainJob({ ...job, forget: expected! });
    const without = await trainJob(job);
    const events = decodeEvents(await rt.core.redis.lrange(lk.buffer, 0, 7999));
    const enc = compileFeatures(decl.features, fitScaling(decl.features, events.map((e) => e.f)));
    const data = buildTrainingData(events, enc, names, { costWeight: 0, halfLife: 1000, forget: expected! });
    const { tf } = await loadTf();
    const local = await trainModel(tf, data, rescaleInputs(init, compileFeatures(decl.features).numeric, enc.numeric), { seed: 5, yieldToEventLoop: false, epochs: 1 });
    assert.deepEqual(deserializeWeights(withForget.weights!), deserializeWeights(serializeWeights(local.weights)));
    assert.notDeepEqual(withForget.weights, without.weights);
  });
});
