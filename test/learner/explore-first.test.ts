import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { type FeaturesBody } from '../../src/learner/features.js';
import { learnerMetaOf, type LearnerMeta } from '../../src/learner/kind.js';
import { EXPLORE_FIRST_SHARE, safeStartExplore, servingModel, type ServingModel } from '@apportion/sdk/engine';
import { EXPLORE_DEFAULTS, type ExploreOptions } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { TrainingService } from '../../src/learner/training.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix, decisionsOf } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * Explore-first (the learned strategy's `exploreFirst`) over a real socket: until the pipeline has that many outcomes
 * the safe start serves a split drawn at random over the simplex on a share of its decisions, logs it (meta `r`) so
 * the candidate set and its probabilities are rebuilt exactly, and the gate's passing verdicts are held; once the
 * trainer sees the count reached, the random splits end and a version that clears the gate serves. Retrains are
 * called directly (TrainingService.train in this process), as in safe-start.test.ts. `gateDelta: 1` makes the gate
 * pass any candidate with support, so the hold (not the gate's estimate) is what the test sees.
 */
const prefix = testPrefix('learner-explore-first');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const world = loadWorld('support-basic');
const decl: FeaturesBody = plainDeclaration(worldFeatures(world));
const UNTIL = 1000;
let rt: Running;
const http = jsonHttp(() => rt.url!);
const names = world.agents.map((a) => a.name);

const rng = mulberry32(17);
async function round(report = true): Promise<string> {
  const x = sampleContext(world, rng);
  const r = await http('POST', '/v1/allocations', { pipeline: 'ef', strategy: 'learn', features: contextFeatures(x) });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  if (report) {
    const out = simulateOutcome(world, 0, x, names.map((a) => r.json.budgets[a].tokens as number), rng);
    assert.equal((await http('POST', '/v1/outcomes', { decisionId: r.json.decisionId, quality: out.quality })).status, 202);
  }
  return r.json.decisionId as string;
}
const record = async (id: string) => JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
const sameSplit = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_MODELS_DIR: modelsDir });
  assert.equal((await http('PUT', '/v1/pipelines/ef', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/ef/features', decl)).status, 200);
  const put = await http('PUT', '/v1/strategies/learn', { pipeline: 'ef', kind: 'learned', params: { exploreFirst: UNTIL, gateDelta: 1, trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
  assert.equal(put.status, 200, JSON.stringify(put.json));
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('explore-first (unit)', () => {
  const explore: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom };
  const m0 = { version: 0 } as ServingModel;
  it('adds random splits only during the safe start of a strategy that sets it, until the trainer ends it', () => {
    assert.equal(safeStartExplore(explore, {}, m0), explore, 'off by default');
    assert.equal(safeStartExplore(explore, { exploreFirst: 0 }, m0), explore, '0 is off');
    assert.deepEqual(safeStartExplore(explore, { exploreFirst: 500 }, m0), { ...explore, wideStart: EXPLORE_FIRST_SHARE, wideKind: 'random' });
    assert.deepEqual(safeStartExplore(explore, { exploreFirst: 500, exploreFirstShare: 0.3 }, m0), { ...explore, wideStart: 0.3, wideKind: 'random' });
    assert.equal(safeStartExplore(explore, { exploreFirst: 500 }, { ...m0, exploreFirstEnded: true }), explore, 'ended');
    assert.equal(safeStartExplore(explore, { exploreFirst: 500 }, { version: 3 } as ServingModel), explore, 'a version serves');
  });
});

describe('explore-first (HTTP)', () => {
  it('refuses a bad share with a 400 naming the field', async () => {
    const r = await http('PUT', '/v1/strategies/bad', { pipeline: 'ef', kind: 'learned', params: { exploreFirst: 100, exploreFirstShare: 1.5 } });
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.match(JSON.stringify(r.json), /exploreFirstShare/);
    const neg = await http('PUT', '/v1/strategies/bad', { pipeline: 'ef', kind: 'learned', params: { exploreFirst: -1 } });
    assert.equal(neg.status, 400);
    assert.match(JSON.stringify(neg.json), /exploreFirst/);
  });

  it('serves random splits on half the safe start, each logged with its exact probability', async () => {
    const models = (await http('GET', '/v1/models/ef')).json;
    assert.deepEqual(models.exploreFirst, { until: UNTIL, share: EXPLORE_FIRST_SHARE, status: 'exploring' });
    const pipeline = rt.core.view().pipelines.get('ef');
    let random = 0;
    const N = 150;
    for (let i = 0; i < N; i++) {
      const d = await record(await round());
      const raw = d.meta!.learner as LearnerMeta;
      assert.equal(raw.m, 0);
      assert.ok(Array.isArray(raw.r) && raw.r.length === names.length, 'the random split is logged');
      assert.equal(raw.r.reduce((s, v) => s + v, 0), world.totalTokens, 'it spends the total');
      const m = learnerMetaOf(d, pipeline);
      assert.ok(m, 'the candidate set is rebuilt from the log');
      assert.ok(Math.abs(m.P.reduce((s, v) => s + v, 0) - 1) < 1e-6);
      const at = m.C.findIndex((c) => sameSplit(c, raw.r!));
      assert.ok(at > 0, 'the random split is a candidate');
      const s = raw.x?.s ?? 0;
      const others = m.C.filter((c, k) => k !== at && sameSplit(c, raw.r!)).length;
      // (1 − control share) × 0.5, plus the control's share when the control's split happens to be the same split.
      if (others === 0 && !(raw.x && sameSplit(raw.x.b, raw.r))) assert.ok(Math.abs(m.P[at]! - (1 - s) * EXPLORE_FIRST_SHARE) < 1e-6, `P(random) ${m.P[at]} with control share ${s}`);
      const served = names.map((a) => d.budgets[a]);
      if (sameSplit(served as number[], raw.r)) random++;
    }
    // Binomial(150, ≈ 0.475): outside [45, 105] with probability < 1e-6.
    assert.ok(random >= 45 && random <= 105, `${random} of ${N} decisions served the random split`);
  });

  it('holds a version the gate passes until the count is reached, then ends the random splits and lets one serve', async () => {
    const training = new TrainingService(rt.core, decisionsOf(rt), {}, false);
    for (let i = 0; i < 50; i++) await round();
    await eventually(async () => (await training.ingest('ef')) && (await training.events('ef', 2000)).length >= 200, 300_000, 250);
    const first = await training.train('ef');
    assert.equal(first.trained, true, first.reason);
    const v1 = first.model!.version;
    // 400 decisions: the candidate's split (10 % of them) reaches the gate's support rule all but surely.
    for (let i = 0; i < 400; i++) await round();
    await eventually(async () => (await training.ingest('ef')) && (await training.events('ef', 2000)).length >= 600, 300_000, 250);
    const second = await training.train('ef');
    assert.equal(second.trained, true, second.reason);
    const held = (await http('GET', '/v1/models/ef')).json;
    const g1 = held.versions.find((v: { version: number }) => v.version === v1).gate;
    assert.equal(g1.status, 'refused');
    assert.match(g1.reason, new RegExp(`^held: explore-first holds the safe start until outcome ${UNTIL} \\(now 6\\d\\d\\); the gate passed it`));
    assert.equal(held.active, null);
    assert.equal(held.serving, 'default-strategy');
    assert.equal(held.exploreFirst.status, 'exploring');
    assert.equal(held.candidate, second.model!.version, 'the next version is proposed');
    const still = (await record(await round(false))).meta!.learner as LearnerMeta;
    assert.ok(Array.isArray(still.r), 'still exploring first');

    for (let i = 0; i < UNTIL - 600 + 20; i++) await round();
    await eventually(async () => (await training.ingest('ef')) && (await training.events('ef', 2000)).length >= UNTIL + 20, 300_000, 250);
    await training.train('ef');
    const done = (await http('GET', '/v1/models/ef')).json;
    assert.equal(done.exploreFirst.status, 'ended');
    assert.ok(done.exploreFirst.endedAtOutcomes >= UNTIL, JSON.stringify(done.exploreFirst));
    assert.equal(servingModel(rt.core.view(), rt.core.view().pipelines.get('ef')!).exploreFirstEnded, true, 'serving reads the end (a later safe start does not explore first again)');
    const g2 = done.versions.find((v: { version: number }) => v.version === second.model!.version).gate;
    assert.equal(g2.status, 'passed', g2.reason);
    assert.equal(done.active, second.model!.version);
    const after = (await record(await round(false))).meta!.learner as LearnerMeta;
    assert.equal(after.m, second.model!.version);
    assert.equal(after.r, undefined, 'no random split once a version serves');
  });
});
