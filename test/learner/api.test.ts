import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decisionSecond, newDecisionId, readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { bucketField, encodeInline } from '../../src/allocation/record-codec.js';
import { isApplied } from '../../src/feedback/processor.js';
import { DEFAULT_GRACE_MS, learnerMetaOf, waitWindowMs } from '../../src/learner/kind.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { defaultEvent } from '../../src/learner/training.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('learner-api');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const world = loadWorld('support-basic');
let rt: Running;
let learner: LearnerModule;

const call = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

const rng = mulberry32(42);

/** Allocates with `strategy` and reports the simulated outcome; returns the decision id. */
async function round(pipeline: string, strategy: string, report = true): Promise<string> {
  const x = sampleContext(world, rng);
  const r = await call('POST', '/v1/allocations', { pipeline, strategy, features: contextFeatures(x) });
  assert.equal(r.statusCode, 200, r.body);
  const a = r.json() as { decisionId: string; budgets: Record<string, { tokens: number }>; reason: string };
  assert.equal(a.reason, 'requested');
  if (report) {
    const out = simulateOutcome(world, 0, x, world.agents.map((ag) => a.budgets[ag.name]!.tokens), rng);
    const o = await call('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: out.quality, usage: out.usage });
    assert.equal(o.statusCode, 202, o.body);
  }
  return a.decisionId;
}

/** apportion_learner_events_total{result="lost"} of this process. */
async function lostCount(): Promise<number> {
  const m = await rt.core.metrics.learnerEvents.get();
  return m.values.find((v) => v.labels.result === 'lost')?.value ?? 0;
}

/** Waits until the outcome worker applied the decision's outcome (its sink entry is then in Redis). */
async function applied(pipeline: string, id: string): Promise<void> {
  await eventually(() => isApplied(rt.core.redis, rt.core.keys, pipeline, id));
}

async function decision(id: string): Promise<DecisionRecord> {
  return JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, id))!) as DecisionRecord;
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_MODELS_DIR: modelsDir });
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  assert.equal((await call('PUT', '/v1/pipelines/sim', worldPipeline(world))).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('feature declarations', () => {
  it('accepts a valid declaration, versions it, and reports its encoded width', async () => {
    const r1 = await call('PUT', '/v1/pipelines/sim/features', worldFeatures(world));
    assert.equal(r1.statusCode, 200, r1.body);
    const r2 = await call('PUT', '/v1/pipelines/sim/features', worldFeatures(world));
    assert.equal(r2.json().version, r1.json().version + 1);
    assert.equal(r1.json().inputDim, 1 + 5 + 2 + 2 + 4 + 2);
    assert.equal((await call('GET', '/v1/pipelines/sim/features')).json().signature, r1.json().signature);
  });

  it('rejects bad declarations with 4xx naming the field, and stores nothing', async () => {
    const before = (await call('GET', '/v1/pipelines/sim/features')).json();
    const bad: [unknown, number, string, RegExp][] = [
      [{ features: [{ name: 'a', type: 'numeric' }, { name: 'a', type: 'numeric' }] }, 400, 'INVALID_FEATURES', /features\/1\/name/],
      [{ features: [{ name: 'c', type: 'categorical' }] }, 400, 'INVALID_FEATURES', /exactly one of values or hashBuckets/],
      [{ features: [{ name: 'c', type: 'categorical', values: ['x', 'x'] }] }, 400, 'INVALID_FEATURES', /unique/],
      [{ features: [{ name: 'n', type: 'numeric', std: 0 }] }, 400, 'INVALID_FEATURES', /std/],
      [{ features: [{ name: 'n', type: 'weird' }] }, 400, 'VALIDATION_FAILED', /features/],
      [{ features: Array.from({ length: 3 }, (_, i) => ({ name: `h${i}`, type: 'categorical', hashBuckets: 1000 })) }, 400, 'INVALID_FEATURES', /limit/],
      // More values than the encoded vector holds: the width limit is the reason given (not a schema error).
      [{ features: [{ name: 'c', type: 'categorical', values: Array.from({ length: 600 }, (_, i) => `v${i}`) }] }, 400, 'INVALID_FEATURES', /limit/],
    ];
    for (const [body, status, code, msg] of bad) {
      const r = await call('PUT', '/v1/pipelines/sim/features', body);
      assert.equal(r.statusCode, status, r.body);
      assert.equal(r.json().code, code);
      assert.match(r.json().message, msg);
    }
    assert.equal((await call('PUT', '/v1/pipelines/nope/features', { features: [] })).statusCode, 404);
    assert.equal((await call('GET', '/v1/pipelines/sim/features')).json().version, before.version);
  });

  it('rejects bad learned-strategy parameters', async () => {
    const r = await call('PUT', '/v1/strategies/bad-learn', { pipeline: 'sim', kind: 'learned', params: { epsilon: 2 } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'INVALID_STRATEGY_PARAMS');
  });
});

describe('learning loop through the API', () => {
  it('logs valid propensities, trains from outcomes, lists and rolls back versions', async () => {
    const put = await call('PUT', '/v1/strategies/learn', { pipeline: 'sim', kind: 'learned', params: { explorer: 'epsilon', epsilon: 0.3, trainEvery: 150, gate: false } });
    assert.equal(put.statusCode, 200, put.body);
    const ids: string[] = [];
    for (let i = 0; i < 160; i++) ids.push(await round('sim', 'learn'));
    for (const id of ids.slice(0, 20)) {
      const d = await decision(id);
      const m = learnerMetaOf(d, rt.core.view().pipelines.get('sim'))!;
      assert.ok(m, 'the candidate set is reproducible from the logged greedy split');
      assert.ok(Math.abs(m.P.reduce((s, v) => s + v, 0) - 1) < 1e-9, 'candidate probabilities sum to 1');
      assert.ok(m.P.every((p) => p > 0));
      assert.equal(m.p, m.P[m.k]);
      assert.deepEqual(m.C[m.k], world.agents.map((a) => d.budgets[a.name]));
      for (const c of m.C) {
        assert.ok(c.reduce((s, v) => s + v, 0) <= d.totalTokens);
        c.forEach((v, i) => assert.ok(v >= world.agents[i]!.minTokens && v <= world.agents[i]!.maxTokens));
      }
    }
    // Retrains run in a child process: on a busy machine one took over a minute (the file's limit bounds the wait).
    const v1 = await eventually(async () => {
      const m = (await call('GET', '/v1/models/sim')).json();
      return m.active ? m : undefined;
    }, 300_000, 100);
    assert.equal(v1.compatible, true);
    assert.ok(v1.versions[0].metrics.rows >= 100);
    // A second version, then roll back to the first: served decisions name the active version.
    assert.equal((await call('POST', '/v1/models/sim/train')).statusCode, 202);
    const v2 = await eventually(async () => {
      const m = (await call('GET', '/v1/models/sim')).json();
      return m.active > v1.active ? m : undefined;
    }, 300_000, 100);
    const rb = await call('POST', '/v1/models/sim/rollback', { version: v1.active });
    assert.equal(rb.statusCode, 200, rb.body);
    assert.equal(rb.json().active, v1.active);
    const id = await round('sim', 'learn', false);
    assert.equal((await decision(id)).meta!.learner && ((await decision(id)).meta!.learner as { m: number }).m, v1.active);
    assert.ok(v2.versions.length >= 2);

    const missing = await call('POST', '/v1/models/sim/rollback', { version: 9999 });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'MODEL_VERSION_NOT_FOUND');
    assert.equal((await call('POST', '/v1/models/sim/rollback', { version: 0 })).statusCode, 400);
    assert.equal((await call('POST', '/v1/models/nope/rollback', { version: 1 })).statusCode, 404);
  });

  it('hot-swaps model versions under load without failing or falling back on any request', async () => {
    const versions = (await call('GET', '/v1/models/sim')).json().versions.map((v: { version: number }) => v.version);
    assert.ok(versions.length >= 2);
    const seen = new Set<number>();
    for (let wave = 0; wave < 6; wave++) {
      // Each wave: 80 allocations in flight while the active version changes under them.
      const allocs = Array.from({ length: 80 }, () =>
        call('POST', '/v1/allocations', { pipeline: 'sim', strategy: 'learn', features: contextFeatures(sampleContext(world, rng)) }),
      );
      const swap = call('POST', '/v1/models/sim/rollback', { version: versions[wave % 2] });
      const [results, sw] = await Promise.all([Promise.all(allocs), swap]);
      assert.equal(sw.statusCode, 200, sw.body);
      for (const r of results) {
        assert.equal(r.statusCode, 200, r.body);
        assert.equal(r.json().strategy, 'learn');
        assert.equal(r.json().reason, 'requested');
      }
      for (const r of results.slice(-5)) seen.add(((await decision(r.json().decisionId)).meta!.learner as { m: number }).m);
    }
    assert.ok(seen.size >= 2, `decisions were served by versions ${[...seen].join(', ')}`);
  });

  it('reports IPS and SNIPS only where the logs support the target: partial support gives null, the reason, and DR', async () => {
    assert.equal((await call('PUT', '/v1/pipelines/part', worldPipeline(world))).statusCode, 200);
    assert.equal((await call('PUT', '/v1/pipelines/part/features', worldFeatures(world))).statusCode, 200);
    const shares = Object.fromEntries(world.agents.map((a, i) => [a.name, i + 1]));
    assert.equal((await call('PUT', '/v1/strategies/part-static', { pipeline: 'part', kind: 'static', params: { shares } })).statusCode, 200);
    const ope = async () => (await call('GET', '/v1/pipelines/part/ope?strategy=part-static&resamples=100')).json();
    // Every decision so far was the target's own (a deterministic split, probability 1): full support.
    let last = '';
    for (let i = 0; i < 30; i++) last = await round('part', 'part-static');
    await applied('part', last);
    const full = await ope();
    assert.equal(full.support, 1);
    assert.ok(full.ips && full.snips && full.dr, JSON.stringify(full));
    assert.equal(full.reason, null);
    // As many decisions again by another strategy, which could never have played the target's split.
    for (let i = 0; i < 30; i++) last = await round('part', '@uniform');
    await applied('part', last);
    const half = await ope();
    assert.ok(half.support > 0.3 && half.support < 0.7, String(half.support));
    assert.equal(half.ips, null);
    assert.equal(half.snips, null);
    assert.ok(half.dr && half.dr.lo <= half.dr.value && half.dr.value <= half.dr.hi);
    assert.match(half.reason, /^partial support: .* on [0-9.]+ % of the 60 logged decisions/);
  });

  it('estimates registered strategies off-policy from the logs', async () => {
    const uni = await call('GET', '/v1/pipelines/sim/ope?strategy=@uniform&resamples=200');
    assert.equal(uni.statusCode, 200, uni.body);
    const u = uni.json();
    assert.ok(u.events >= 150);
    assert.equal(u.support, 1, 'the uniform split is always a candidate');
    assert.ok(u.ess > 0 && u.ess <= u.events);
    for (const e of [u.ips, u.snips, u.dr]) assert.ok(e.lo <= e.value && e.value <= e.hi);
    const self = (await call('GET', '/v1/pipelines/sim/ope?strategy=learn&resamples=100')).json();
    assert.ok(self.events >= 150);
    assert.equal((await call('GET', '/v1/pipelines/sim/ope?strategy=nope')).statusCode, 404);
    assert.equal((await call('GET', '/v1/pipelines/sim/ope')).statusCode, 400);
    const logs = (await call('GET', '/v1/pipelines/sim/logs?limit=5')).json();
    assert.equal(logs.items.length, 5);
  });

  it('runs a learned strategy in shadow beside the served one and reports agreement and value', async () => {
    const put = await call('PUT', '/v1/strategies/shadowed', { pipeline: 'sim', kind: 'learned', params: { shadow: true } });
    assert.equal(put.statusCode, 200, put.body);
    // Nothing observed yet: no figures that read as "0 % agreement", but null and why.
    const none = (await call('GET', '/v1/pipelines/sim/shadow?strategy=shadowed')).json();
    assert.equal(none.observed, 0);
    assert.equal(none.agreement, null);
    assert.equal(none.servedReward, null);
    assert.match(none.reason, /no logged decision with an outcome/);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push(await round('sim', '@uniform'));
    const d = await decision(ids[0]!);
    assert.equal(d.strategy, '@uniform');
    const sh = (d.shadow!.learner as Record<string, { b: number[]; agreement: number; predicted: number; servedPredicted: number }>).shadowed!;
    assert.equal(sh.b.length, world.agents.length);
    assert.ok(sh.b.reduce((s, v) => s + v, 0) <= d.totalTokens);
    assert.ok(sh.agreement >= 0 && sh.agreement <= 1);
    assert.ok(!('learn' in (d.shadow!.learner as object)), 'only strategies with shadow: true run in shadow');
    await applied('sim', ids.at(-1)!);
    const rep = await eventually(async () => {
      const r = (await call('GET', '/v1/pipelines/sim/shadow?strategy=shadowed')).json();
      return r.observed >= 30 ? r : undefined;
    });
    assert.ok(rep.agreement > 0 && rep.agreement <= 1);
    assert.equal(rep.reason, undefined);
    assert.ok(rep.ope.events > 0);
    assert.equal((await call('GET', '/v1/pipelines/sim/shadow?strategy=est-none')).statusCode, 404);
    assert.equal((await call('DELETE', '/v1/strategies/shadowed')).statusCode, 204);
  });

  it('refuses a rollback to a model trained for another feature declaration (409)', async () => {
    const active = (await call('GET', '/v1/models/sim')).json().active;
    const decl = worldFeatures(world);
    assert.equal((await call('PUT', '/v1/pipelines/sim/features', { features: decl.features.slice(0, 3) })).statusCode, 200);
    const r = await call('POST', '/v1/models/sim/rollback', { version: active });
    assert.equal(r.statusCode, 409);
    assert.equal(r.json().code, 'MODEL_INCOMPATIBLE');
    // Serving continues on the prior (model 0) rather than failing.
    const id = await round('sim', 'learn', false);
    assert.equal(((await decision(id)).meta!.learner as { m: number }).m, 0);
    assert.equal((await call('GET', '/v1/models/sim')).json().compatible, false);
    assert.equal((await call('PUT', '/v1/pipelines/sim/features', decl)).statusCode, 200);
  });
});

describe('reward wait window', () => {
  it('gives the default reward to decisions without an outcome and drops a late outcome', async () => {
    await call('PUT', '/v1/pipelines/wait', worldPipeline(world));
    const put = await call('PUT', '/v1/strategies/wait-learn', { pipeline: 'wait', kind: 'learned', params: { rewardWaitSeconds: 1, defaultReward: 0.25, trainEvery: 100000 } });
    assert.equal(put.statusCode, 200, put.body);
    const ids = [await round('wait', 'wait-learn', false), await round('wait', 'wait-learn', false), await round('wait', 'wait-learn', false)];
    const far = Date.now() + 3_600_000;
    await eventually(async () => (await rt.core.redis.zcard(rt.core.keys.pipeline('wait', 'learner', 'pending'))) === 3);
    const swept = await learner.training.ingest('wait', far);
    assert.equal(swept.defaulted, 3);
    const events = await learner.training.events('wait', 10);
    assert.equal(events.length, 3);
    assert.ok(events.every((e) => e.q === 0.25 && e.d === 1));
    // Built from the decision records: the decision's id, context and served budgets.
    assert.deepEqual(events.map((e) => e.id).sort(), [...ids].sort());
    for (const e of events) {
      const d = await decision(e.id);
      assert.deepEqual([e.b, e.f, e.T, e.s, e.t], [d.budgets, d.features, d.totalTokens, d.strategy, d.ts]);
    }
    assert.equal((await learner.training.ingest('wait', far)).defaulted, 0, 'a second sweep defaults nothing');
    // The outcome of a defaulted decision arrives (within the window by its clock, but after the sweep): dropped.
    assert.equal((await call('POST', '/v1/outcomes', { decisionId: ids[0], quality: 0.9 })).statusCode, 202);
    await applied('wait', ids[0]!);
    await learner.training.ingest('wait', far);
    const after = await learner.training.events('wait', 10);
    assert.equal(after.length, 3);
    assert.ok(after.every((e) => e.q === 0.25));
  });

  it('uses a real outcome that arrives in time', async () => {
    const id = await round('wait', 'wait-learn', false);
    assert.equal((await call('POST', '/v1/outcomes', { decisionId: id, quality: 0.75 })).statusCode, 202);
    await applied('wait', id);
    await learner.training.ingest('wait', Date.now() + 3_600_000);
    const all = await learner.training.events('wait', 10);
    assert.equal(all.length, 4, 'logged once, not also defaulted');
    const newest = all[0]!;
    assert.equal(newest.id, id);
    assert.equal(newest.q, 0.75);
  });
  it('counts an outcome received after the wait window as late in /metrics, and trains on the default reward only', async () => {
    const lk = learnerKeys(rt.core.keys, 'wait');
    /** apportion_learner_events_total{result="late"} as GET /metrics shows it. */
    const lateMetric = async (): Promise<number> => {
      const r = await call('GET', '/metrics');
      assert.equal(r.statusCode, 200);
      const m = /^apportion_learner_events_total\{result="late"\} (\d+)$/m.exec(r.body);
      return m ? Number(m[1]) : 0;
    };
    /** Reports an outcome for `id` once its wait window (rewardWaitSeconds 1) has passed by the decision's clock. */
    const reportLate = async (id: string, quality: number) => {
      const d = await decision(id);
      const waitMs = waitWindowMs({ rewardWaitSeconds: 1 }, 86_400);
      while (Date.now() <= d.ts + waitMs + 50) await new Promise((r) => setTimeout(r, 100));
      assert.equal((await call('POST', '/v1/outcomes', { decisionId: id, quality })).statusCode, 202);
      await applied('wait', id);
    };
    const eventsOf = async (id: string) => (await learner.training.events('wait', 100_000)).filter((e) => e.id === id);

    // (1) Late, before the sweep gave the default reward: counted as late, its ticket still pending, then defaulted once.
    const id1 = await round('wait', 'wait-learn', false);
    await learner.pending.flush();
    await eventually(async () => (await rt.core.redis.zscore(lk.pending, id1)) !== null);
    const late0 = await lateMetric();
    await reportLate(id1, 0.9);
    await learner.training.ingest('wait');
    await eventually(async () => (await lateMetric()) === late0 + 1);
    assert.deepEqual(await eventsOf(id1), [], 'the late outcome is not trained on');
    assert.notEqual(await rt.core.redis.zscore(lk.pending, id1), null, 'still waiting for its default reward');
    const far = Date.now() + 3_600_000;
    await learner.training.ingest('wait', far);
    const got1 = await eventsOf(id1);
    assert.deepEqual(
      got1.map((e) => [e.q, e.d]),
      [[0.25, 1]],
      'one event: the default reward',
    );

    // (2) Late, after the sweep gave the default reward: counted as late once, nothing more trained on.
    const id2 = await round('wait', 'wait-learn', false);
    await learner.pending.flush();
    await eventually(async () => (await rt.core.redis.zscore(lk.pending, id2)) !== null);
    await learner.training.ingest('wait', Date.now() + 3_600_000);
    assert.deepEqual((await eventsOf(id2)).map((e) => e.q), [0.25]);
    await reportLate(id2, 0.9);
    await learner.training.ingest('wait');
    await eventually(async () => (await lateMetric()) === late0 + 2);
    await learner.training.ingest('wait', Date.now() + 3_600_000);
    assert.equal(await lateMetric(), late0 + 2, 'each late outcome counted once');
    assert.deepEqual((await eventsOf(id2)).map((e) => e.q), [0.25], 'still only the default reward');
    assert.equal(await rt.core.redis.llen(lk.incoming), 0);
  });

  it('does not default a decision whose outcome overtook its batched registration', async () => {
    const lk = learnerKeys(rt.core.keys, 'wait');
    const id = await round('wait', 'wait-learn', false);
    await learner.pending.flush();
    // Simulate the overtaking order: the registration is not there yet when the outcome is ingested.
    const deadline = Number(await rt.core.redis.zscore(lk.pending, id));
    assert.ok(deadline > Date.now());
    await rt.core.redis.zrem(lk.pending, id);
    const ev = { id, t: Date.now(), s: 'wait-learn', f: {}, T: 10000, b: {}, q: 0.6, c: null };
    await rt.core.redis.lpush(lk.incoming, `${id}|${JSON.stringify(ev)}`);
    await learner.training.ingest('wait');
    assert.notEqual(await rt.core.redis.zscore(lk.resolved, id), null, 'remembered as resolved');
    // The registration arrives late; when its deadline passes it is dropped, not defaulted.
    learner.pending.add(lk.pending, id, deadline);
    await learner.pending.flush();
    const before = (await learner.training.events('wait', 100)).length;
    const swept = await learner.training.ingest('wait', Date.now() + 3_600_000);
    assert.equal(swept.defaulted, 0);
    const after = await learner.training.events('wait', 100);
    assert.equal(after.length, before, 'never defaulted');
    assert.ok(after.some((e) => e.id === id && e.q === 0.6));
    assert.equal(await rt.core.redis.zscore(lk.pending, id), null);
    assert.equal(await rt.core.redis.zscore(lk.resolved, id), null);
  });

  it('gives no default to a due decision whose record is gone, and counts it', async () => {
    const lk = learnerKeys(rt.core.keys, 'wait');
    const id = await round('wait', 'wait-learn', false);
    await learner.pending.flush();
    await eventually(async () => (await rt.core.redis.zscore(lk.pending, id)) !== null);
    const sec = rt.core.keys.decisionBucket(decisionSecond(id)!, rt.core.keys.shardOf(id));
    assert.equal(await rt.core.redis.hdel(sec, bucketField(id)), 1);
    const before = (await learner.training.events('wait', 100)).length;
    const lostBefore = await lostCount();
    const swept = await learner.training.ingest('wait', Date.now() + 3_600_000);
    assert.deepEqual([swept.defaulted, swept.lost], [0, 1]);
    assert.equal((await lostCount()) - lostBefore, 1, 'counted in apportion_learner_events_total{result="lost"}');
    assert.equal((await learner.training.events('wait', 100)).length, before);
    assert.equal(await rt.core.redis.zscore(lk.pending, id), null, 'taken off the pending set');
  });

  it('concurrent sweeps default each due decision exactly once', async () => {
    const lk = learnerKeys(rt.core.keys, 'wait');
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await round('wait', 'wait-learn', false));
    await learner.pending.flush();
    assert.equal((await rt.core.redis.zmscore(lk.pending, ...ids)).filter((v) => v !== null).length, 40, 'every learned decision registered');
    const before = await learner.training.events('wait', 1000);
    const far = Date.now() + 3_600_000;
    const sweeps = await Promise.all([learner.training.ingest('wait', far), learner.training.ingest('wait', far), learner.training.ingest('wait', far)]);
    assert.equal(
      sweeps.reduce((s, r) => s + r.defaulted, 0),
      40,
    );
    const after = await learner.training.events('wait', 1000);
    const fresh = after.slice(0, after.length - before.length);
    assert.equal(fresh.length, 40);
    assert.deepEqual(fresh.map((e) => e.id).sort(), [...ids].sort(), 'one default event per decision, none twice');
    assert.equal(await rt.core.redis.zcard(lk.pending), 0);
  });

  it('a sweep larger than one round (500) defaults every due decision once, across rounds and buckets', async () => {
    const lk = learnerKeys(rt.core.keys, 'wait');
    const template = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, await round('wait', 'wait-learn', false)))!) as DecisionRecord;
    await learner.pending.flush();
    await rt.core.redis.del(lk.pending);
    const ids = Array.from({ length: 1_150 }, (_, i) => newDecisionId(Date.now() - (i % 3) * 1000));
    for (const id of ids) {
      await rt.core.redis.hset(rt.core.keys.decisionBucket(decisionSecond(id)!, rt.core.keys.shardOf(id)), bucketField(id), encodeInline({ ...template, id }));
    }
    await rt.core.redis.zadd(lk.pending, ...ids.flatMap((id) => [Date.now() + 1000, id]));
    const before = (await learner.training.events('wait', 100_000)).length;
    const swept = await learner.training.ingest('wait', Date.now() + 3_600_000);
    assert.deepEqual([swept.defaulted, swept.lost], [1_150, 0]);
    const after = await learner.training.events('wait', 100_000);
    const fresh = after.slice(0, after.length - before);
    assert.deepEqual(fresh.map((e) => e.id).sort(), [...ids].sort(), 'one default event per decision, none twice');
    assert.equal((await learner.training.ingest('wait', Date.now() + 3_600_000)).defaulted, 0, 'a second sweep finds nothing');
  });

  it('builds a default-reward event only from a readable learned record of the same pipeline', async () => {
    const id = await round('wait', 'wait-learn', false);
    const json = (await readDecisionJson(rt.core.redis, rt.core.keys, id))!;
    const view = rt.core.view();
    const ev = JSON.parse(defaultEvent(view, 'wait', json)) as { id: string; q: number; d: number; C?: number[][]; P?: number[]; k?: number };
    assert.deepEqual([ev.id, ev.q, ev.d], [id, 0.25, 1], 'the strategy’s defaultReward');
    const m = learnerMetaOf(JSON.parse(json) as DecisionRecord, view.pipelines.get('wait'))!;
    assert.deepEqual([ev.C, ev.P, ev.k], [m.C, m.P, m.k], 'the decision’s true propensities ride along (the DSJSON export keeps them)');
    assert.equal(defaultEvent(view, 'other-pipeline', json), '');
    assert.equal(defaultEvent(view, 'wait', '{not json'), '', 'an unreadable record does not stall the sweep');
    const rec = JSON.parse(json) as DecisionRecord;
    assert.equal(defaultEvent(view, 'wait', JSON.stringify({ ...rec, meta: {} })), '', 'not a learned decision');
    assert.equal(defaultEvent(view, 'wait', null), '');
  });

  it('caps the wait window at the decision retention', () => {
    assert.equal(waitWindowMs({ rewardWaitSeconds: 600 }, 86_400), 600_000);
    assert.equal(waitWindowMs({}, 86_400), 600_000);
    assert.equal(waitWindowMs({ rewardWaitSeconds: 0 }, 86_400), 0);
    assert.equal(waitWindowMs({ rewardWaitSeconds: 2 * 86_400 }, 86_400), 86_400_000 - DEFAULT_GRACE_MS);
  });
});
