import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { learnerMetaOf, servingModel, type LearnerMeta } from '../../src/learner/kind.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { forward } from '../../src/learner/model.js';
import { candidatesAround, greedyBudgets } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { degradeWorld } from '../../src/learner/sim/degrade.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { policyAgents } from '../../src/learner/sim/loop.js';
import { contextFeatures, expectedQuality, loadWorld, sampleContext, simulateOutcome, uniformBudgets, worldFeatures, worldPipeline, type World } from '../../src/learner/sim/world.js';
import { TrainingService } from '../../src/learner/training.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix, decisionsOf } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * Drift recovery end to end, over a real socket, against Redis and BullMQ: a learned strategy is trained on a world
 * (uneven-needs: needs an order of magnitude apart, so the learned split is far from uniform) and, once a version
 * clears the activation gate, serves; the world then changes (agents swap their behaviour, chosen on seeded contexts
 * and checked on the truth to make the serving version worse than the default strategy by ≥ 0.05); at the next
 * retrain drift recovery detects the change (listed under `drift` in GET
 * /v1/models), trains with a shortened half-life (the new version's metrics) and retires the serving version
 * (listed with reason `drift` and the gate's estimate, counted in /metrics under reason="drift"), after which the
 * default strategy serves. The contexts and outcomes are seeded; the exploration draws follow the decision ids.
 * Retrains are called directly (the service's TrainingService.train, in this process), as in safe-start.test.ts.
 */
const prefix = testPrefix('learner-drift-api');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-drift-models-'));
const world = loadWorld('uneven-needs');
const rng = mulberry32(4242);
/**
 * controlShare 0.1: the default strategy's split is played on ≥ 20 of the post-change decisions (the gate's support
 * rule); guardMargin 1: the runtime guard (whose tick runs meanwhile) reverts only when the learned arm falls short
 * of control by more than the whole reward range, which cannot happen, so what retires the version is the path under
 * test (with a level alone, e.g. guardAlpha 0.001, the guard still beat drift recovery to it on a busy machine).
 */
const params = { controlShare: 0.1, guardMargin: 1, trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0, driftCandidateShare: 0.1 };
let rt: Running;
let training: TrainingService;
let reported = 0;

const http = jsonHttp(() => rt.url!);

/** Allocates through the pipeline's default route (the learned strategy) and reports the outcome in world `w`. */
async function round(w: World): Promise<{ id: string; budgets: number[] }> {
  const x = sampleContext(w, rng);
  const a = await http('POST', '/v1/allocations', { pipeline: 'drift', features: contextFeatures(x) });
  assert.equal(a.status, 200, a.text);
  const budgets = w.agents.map((ag) => a.json.budgets[ag.name].tokens as number);
  const out = simulateOutcome(w, 0, x, budgets, rng);
  assert.equal((await http('POST', '/v1/outcomes', { decisionId: a.json.decisionId, quality: out.quality })).status, 202);
  reported++;
  return { id: a.json.decisionId as string, budgets };
}

async function rounds(w: World, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await round(w);
  // Every reported outcome applied, then moved to the training buffer.
  const counters = learnerKeys(rt.core.keys, 'drift').counters;
  await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= reported, 120_000, 100);
  await eventually(async () => (await training.ingest('drift')) && (await training.events('drift', 20_000)).length >= reported, 120_000, 100);
}

const models = async () => (await http('GET', '/v1/models/drift')).json;

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: modelsDir });
  training = new TrainingService(rt.core, decisionsOf(rt), {}, false);
  assert.equal((await http('PUT', '/v1/pipelines/drift', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/drift/features', plainDeclaration(worldFeatures(world)))).status, 200);
  const s = await http('PUT', '/v1/strategies/learn', { pipeline: 'drift', kind: 'learned', params });
  assert.equal(s.status, 200, s.text);
  // The learned strategy is the pipeline's default: its default strategy (and guard control) is the uniform split.
  assert.equal((await http('PUT', '/v1/pipelines/drift', { ...worldPipeline(world), defaultStrategy: 'learn' })).status, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('drift recovery (HTTP)', () => {
  it('detects a change of the world at a retrain, shortens the half-life and retires the serving version; listed and counted', async () => {
    // Trained on the world: a first version on ≥ 1,000 events (drift recovery checks only versions trained on that
    // many), then put to the activation gate on the decisions since; a refused one is followed by the next.
    await rounds(world, 1050);
    const first = await training.train('drift');
    assert.equal(first.trained, true, first.reason);
    let serving = 0;
    for (let attempt = 0; attempt < 3 && serving === 0; attempt++) {
      await rounds(world, 400);
      const r = await training.train('drift');
      assert.equal(r.trained, true, r.reason);
      serving = (await models()).active ?? 0;
    }
    const beforeChange = await models();
    assert.ok(serving > 0, `a version cleared the gate: ${JSON.stringify(beforeChange.versions.map((v: { version: number; gate?: { reason: string } }) => [v.version, v.gate?.reason]))}`);
    assert.equal(beforeChange.serving, 'model');
    const candidate = beforeChange.candidate as number;
    assert.ok(candidate > serving, 'a newer version awaits the gate');
    const changesBefore = beforeChange.drift?.changes?.length ?? 0;
    // The candidate share (driftCandidateShare): the usual one for a version trained without a recent change.
    if (changesBefore === 0) assert.equal(servingModel(rt.core.view(), rt.core.view().pipelines.get('drift')!).candidate?.share, undefined);
    // Without an earlier (false) detection, every version so far was trained with the configured half-life.
    if (changesBefore === 0) for (const v of beforeChange.versions) assert.equal(v.metrics.halfLife, 1000, `version ${v.version}`);

    const view = rt.core.view();
    const model = servingModel(view, view.pipelines.get('drift')!);
    assert.equal(model.version, serving);
    const uniform = uniformBudgets(world, world.totalTokens);
    const contexts = Array.from({ length: 300 }, () => sampleContext(world, rng));
    const splits = contexts.map((x) => greedyBudgets(forward(model.weights, model.encoder.encode(contextFeatures(x))), policyAgents(world), world.totalTokens));
    // The change (seeded contexts, judged on the truth): of a fixed list of changes, the one under which the serving
    // version's split loses most against uniform: two agents swap their behaviour (the one the version favours most,
    // relative to uniform, with each other one), or the favoured agent needs almost nothing while every other one
    // becomes critical and needs `f` times its tokens (src/learner/sim/degrade.ts).
    const ratios = world.agents.map((_, j) => splits.reduce((s, b) => s + b[j]! / uniform[j]!, 0) / splits.length);
    const favoured = world.agents[ratios.indexOf(Math.max(...ratios))]!.name;
    const others = world.agents.map((a) => a.name).filter((a) => a !== favoured);
    const gap = (w: World) => contexts.reduce((s, x, i) => s + expectedQuality(w, 0, x, splits[i]!) - expectedQuality(w, 0, x, uniform), 0) / contexts.length;
    const { drift: _drift, ...stationary } = world;
    const options: [string, World][] = [
      ...others.map((a): [string, World] => [`${favoured} and ${a} swap`, { ...stationary, truth: { ...world.truth, [favoured]: world.truth[a]!, [a]: world.truth[favoured]! } }]),
      ...[2, 4, 8, 16, 32].map((f): [string, World] => [`${favoured} needs 1/64, the others × ${f}`, others.reduce((w, a) => degradeWorld(w, a, f), degradeWorld(world, favoured, 1 / 64))]),
    ];
    const gaps = options.map(([, w]) => gap(w));
    const pick = gaps.indexOf(Math.min(...gaps));
    const [how, changed] = options[pick]!;
    const truth = gaps[pick]!;
    // ≥ 0.05, well past the gate's δ (0.02) that retirement needs: a first version trained on the 1,050 safe-start
    // events may favour its agents only mildly (largest ratio to uniform 1.55 in one run, best change −0.057).
    assert.ok(truth <= -0.05, `the changed world makes version ${serving} worse than the default (gap ${truth}: ${how}; ratios ${ratios.map((r) => r.toFixed(2))}, gaps ${gaps.map((g) => g.toFixed(3))})`);
    const swapAt = Date.now();
    // 800 decisions after the change: with 400 the retirement's DR bound on a −0.05 change missed −δ in about one run
    // of four on a busy machine (the change was detected, the version kept serving), and with 600 in one fresh-clone CI
    // run of four on 2026-12-06 (the exploration draws follow the decision ids, so runs differ). The guard cannot beat
    // it to the revert (guardMargin 1), so more decisions only tighten the bound; not more than 800, so that a quarter
    // of the events since the change stays under the half-life's floor of 250 asserted below.
    await rounds(changed, 800);

    // The next retrain: the change is detected on the candidate (trained before it), the serving version is retired,
    // and the new version is trained with the half-life shortened to the events since the change.
    const after = await training.train('drift');
    assert.equal(after.trained, true, after.reason);
    const list = await models();
    const changes = list.drift?.changes ?? [];
    assert.equal(changes.length, changesBefore + 1, `one change detected: ${JSON.stringify(changes)}`);
    const c = changes[0];
    assert.equal(c.version, candidate, 'the newest version was checked');
    assert.ok(c.detectedAt >= swapAt && c.changeTs <= swapAt, JSON.stringify(c));
    assert.ok(c.n >= 400 && c.z >= 3 && c.mse > 1.25 * c.holdoutMse, JSON.stringify(c));
    assert.match(c.reason, /squared error on \d+ new decisions/);
    const newest = list.versions.find((v: { version: number }) => v.version === after.model!.version);
    assert.ok(newest.metrics.halfLife < 1000, `the retrain after the change used a shorter half-life (${newest.metrics.halfLife})`);
    assert.equal(newest.metrics.halfLife, 250, 'a quarter of the ~800 events since the change, at least 250');
    // The serving version was retired at this retrain, so it starts from the untrained prior, not from the pending
    // candidate (a fit of the world before the change): drift.ts COLD_AFTER_CHANGE_DEFAULT.
    assert.equal(newest.metrics.warmStart, undefined, `trained from the prior, not warm-started from version ${newest.metrics.warmStart}`);
    // Trained while the change is recent: it is the candidate at the strategy's driftCandidateShare (policy.ts candidateShareFor).
    const pending = servingModel(rt.core.view(), rt.core.view().pipelines.get('drift')!).candidate;
    assert.deepEqual([pending?.version, pending?.share], [after.model!.version, 0.1]);

    // Retired, with drift recovery's own reason and estimate (the gate's DR estimate on the post-change decisions).
    assert.equal(list.active, null, `no model serves (the change: ${how}, true gap ${truth.toFixed(3)}; detected ${JSON.stringify(c)})`);
    assert.equal(list.serving, 'default-strategy');
    assert.equal(list.guard.toControl, true);
    const revert = list.guard.reverts[0];
    assert.deepEqual([revert.reason, revert.from, revert.to], ['drift', serving, 0]);
    assert.equal(revert.ci, undefined, 'no guard interval is made up');
    assert.equal(revert.learned, undefined);
    const e = revert.estimate;
    assert.ok(e.events >= 200 && e.events <= 800, `${e.events} post-change decisions`);
    assert.ok(e.since >= c.changeTs && e.since <= swapAt, 'judged on the decisions since the change');
    assert.ok(Math.abs(revert.diff - (e.serving - e.default)) < 1e-9);
    assert.ok(revert.diff < -e.delta && e.lower <= revert.diff && e.delta === 0.02 && Math.abs(e.level - 0.95) < 1e-3, JSON.stringify(revert));
    assert.equal(e.defaultStrategy, '@uniform');
    assert.deepEqual(list.versions.find((v: { version: number }) => v.version === serving).reverted, revert);

    const metrics = (await http('GET', '/metrics')).text;
    assert.match(metrics, /apportion_learner_guard_reverts_total\{reason="drift",to="control"\} 1\n/);
    assert.doesNotMatch(metrics, /apportion_learner_guard_reverts_total\{reason="guard"/, 'the runtime guard did not revert');

    // No model serves: the safe start does (the default strategy explored around), the control arm at its share, and
    // the candidate is played at its share, so it can clear the gate (revert-recovery.test.ts).
    let mixedChecked = 0;
    let atDefault = 0;
    for (let i = 0; i < 10; i++) {
      const { id, budgets } = await round(changed);
      if (budgets.every((b, j) => b === uniform[j])) atDefault++;
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
      const m = d.meta!.learner as LearnerMeta;
      const x = m.x!;
      assert.deepEqual([m.m, x.s], [0, 0.1]);
      // The candidate's split is mixed in at 0.1 (exactly, when it is none of the safe start's own candidates), and the
      // outcome worker rebuilds the logged distribution from the meta, the control arm mixed in: the candidate keeps
      // (1 − 0.1) of its 0.1.
      assert.equal(m.cv, after.model!.version);
      const own = candidatesAround(m.g, policyAgents(world), d.totalTokens, m.d, m.a);
      const at = own.length === m.P.length - 1 ? m.P.length - 1 : -1;
      const rebuilt = learnerMetaOf(d, rt.core.view().pipelines.get('drift'));
      assert.ok(rebuilt, 'the logged decision is rebuilt');
      if (at >= 0) {
        assert.ok(Math.abs(m.P[at]! - 0.1) < 1e-6, `candidate probability ${m.P[at]}`);
        const k = rebuilt.C.findIndex((c) => c.every((v, j) => v === m.c![j]));
        assert.ok(k >= 0 && Math.abs(rebuilt.P[k]! - 0.09) < 1e-6, `logged candidate probability ${rebuilt.P[k]}`);
        mixedChecked++;
      }
    }
    assert.ok(mixedChecked > 0, 'the candidate split was appended to a logged decision');
    assert.ok(atDefault >= 3, `${atDefault} of 10 decisions at the default split`);
  });
});
