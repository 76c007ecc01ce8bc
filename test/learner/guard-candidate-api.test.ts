import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { compileFeatures } from '../../src/learner/features.js';
import { CANDIDATE_MIN_OUTCOMES } from '../../src/learner/guard.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { initialWeights } from '../../src/learner/model.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { plainDeclaration } from '../../src/learner/sim/family.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * The runtime guard's candidate arm over a real socket, during the safe start (no version has cleared the gate):
 * a hand-made version is put as the pending candidate, and in this world its split is bad (an outcome served by
 * exactly the candidate's split loses 0.4 of quality). The guard refuses it on the realised rewards of the
 * decisions its split served — before any retrain put it to the activation gate — the models listing says so
 * with the guard's interval, /metrics counts it, and decisions stop mixing it in.
 */
const prefix = testPrefix('learner-guard-candidate');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-guardc-models-'));
const world = loadWorld('support-basic');
const decl = plainDeclaration(worldFeatures(world));
const shares = { orchestrator: 1, retriever: 3, reasoner: 4, validator: 1, formatter: 1 };
let rt: Running;
let learner: LearnerModule;
const rng = mulberry32(4242);
let reported = 0;
const names = world.agents.map((a) => a.name);

const http = jsonHttp(() => rt.url!);

/** One decision through the learned strategy, its outcome in the world where the candidate's split is bad. */
async function round(): Promise<LearnerMeta> {
  const x = sampleContext(world, rng);
  const a = await http('POST', '/v1/allocations', { pipeline: 'cand', strategy: 'learn', features: contextFeatures(x) });
  assert.equal(a.status, 200, a.text);
  const budgets = names.map((n) => a.json.budgets[n].tokens as number);
  const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, a.json.decisionId))!) as DecisionRecord;
  const m = d.meta!.learner as LearnerMeta;
  const candidateSplit = Array.isArray(m.c) && m.c.every((v, i) => v === budgets[i]);
  const q = simulateOutcome(world, 0, x, budgets, rng).quality;
  const o = await http('POST', '/v1/outcomes', { decisionId: a.json.decisionId, quality: candidateSplit ? Math.max(0, q - 0.4) : q });
  assert.equal(o.status, 202, o.text);
  reported++;
  return m;
}

async function settle(): Promise<void> {
  const counters = learnerKeys(rt.core.keys, 'cand').counters;
  await eventually(async () => Number((await rt.core.redis.hget(counters, 'outcomes')) ?? 0) >= reported, 300_000);
  await learner.training.ingest('cand');
}

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: modelsDir });
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  assert.equal((await http('PUT', '/v1/pipelines/cand', worldPipeline(world))).status, 200);
  assert.equal((await http('PUT', '/v1/strategies/fixed', { pipeline: 'cand', kind: 'static', params: { shares } })).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/cand', { ...worldPipeline(world), defaultStrategy: 'fixed' })).status, 200);
  assert.equal((await http('PUT', '/v1/pipelines/cand/features', decl)).status, 200);
  // Default control share (5 %) and candidate share (10 %); retrains only on request (none is requested).
  const put = await http('PUT', '/v1/strategies/learn', { pipeline: 'cand', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, rewardWaitSeconds: 0 } });
  assert.equal(put.status, 200, put.text);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('runtime guard: the pending candidate’s arm', () => {
  it('refuses a bad candidate during the safe start, before the gate judges it: listed, counted, no longer mixed in', async () => {
    // A hand-made version (the untrained prior) proposed as the candidate: the registry path a retrain takes.
    const enc = compileFeatures(decl.features);
    const weights = initialWeights(enc.dim, names.length, world.totalTokens, mulberry32(11));
    const metrics = { rows: 0, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 0 };
    const saved = await learner.training.registry.save('cand', weights, { signature: enc.signature, agents: names, metrics });
    await learner.training.registry.propose(saved);
    const listed = (await http('GET', '/v1/models/cand')).json;
    assert.deepEqual([listed.active, listed.serving, listed.candidate], [null, 'default-strategy', saved.version]);

    let drawn = 0;
    let refused = false;
    for (let i = 0; i < 3000 && !refused; i++) {
      const m = await round();
      assert.equal(m.m, 0, 'the safe start decides');
      if (m.cw === 1) drawn++;
      if ((i + 1) % 50 === 0) {
        await settle();
        // The worker's tick checks too (every 5 s): either may be the one that refuses.
        await learner.guard.checkCandidate('cand');
        refused = learner.training.registry.doc('cand')?.candidate === undefined;
      }
    }
    assert.ok(refused, `the guard refused the candidate (${reported} decisions, ${drawn} drawn for it)`);
    // The gate never judged it (no retrain ran): the record is the guard's.
    const after = (await http('GET', '/v1/models/cand')).json;
    assert.deepEqual([after.active, after.serving, after.candidate], [null, 'default-strategy', null]);
    const v = after.versions.find((x: { version: number }) => x.version === saved.version);
    assert.equal(v.gate.status, 'refused');
    assert.match(v.gate.reason, /refused by the runtime guard/);
    assert.deepEqual(v.gate.comparisons, [], 'the activation gate did not judge it');
    assert.equal(v.gate.guard.reason, 'guard');
    assert.ok(v.gate.guard.ci[1] < 0 && v.gate.guard.diff < 0, JSON.stringify(v.gate.guard));
    assert.ok(v.gate.guard.candidate.n >= CANDIDATE_MIN_OUTCOMES && v.gate.guard.reference.n >= 30, JSON.stringify(v.gate.guard));
    // Refused before the gate would have judged it with the service's defaults (at the next retrain, 500 outcomes on).
    assert.ok(v.gate.events < 500, `${v.gate.events} decisions`);
    assert.ok(['default', 'serving'].includes(v.gate.guard.against));

    const metricsText = (await http('GET', '/metrics')).text;
    assert.match(metricsText, /apportion_learner_guard_reverts_total\{reason="candidate",to="refused"\} 1\n/);

    // No longer mixed in.
    for (let i = 0; i < 20; i++) {
      const m = await round();
      assert.equal(m.cv, undefined);
      assert.equal(m.cw, undefined);
    }
    // The buffer's events mark the candidate arm: every event with `v` names the refused version.
    await settle();
    const events = await learner.training.events('cand', 5000);
    const marked = events.filter((e) => e.v !== undefined);
    assert.ok(marked.length > 0 && marked.every((e) => e.v === saved.version && e.a !== 1));
  });
});
