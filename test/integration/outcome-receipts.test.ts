import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DecisionStore, newDecisionId, readDecision } from '../../src/allocation/decisions.js';
import { isApplied } from '../../src/feedback/processor.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateWorld } from '../../src/learner/sim/family.js';
import type { Running } from '../../src/server.js';
import { declare } from '../helpers/drive-world.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * Outcome receipts: what an accepted outcome (202) promises, with the API and the workers in separate processes (the
 * workers started only when the test says so, as after a kill -9 of every worker or a backlog), real Redis.
 *
 * - An outcome accepted within its decision's wait window is the decision's learner event even when the default-reward
 *   sweep runs before its job is applied: the sweep leaves such a decision alone, and an outcome accepted after the
 *   sweep claimed a decision counts in the statistics but adds no second learner event. Checked to fail without the
 *   receipts (the sweep gave every decision the default reward, and the real outcomes were then dropped as late).
 * - The first report of a decision wins: the same report again is 202 and counted once, a different one is 409
 *   OUTCOME_CONFLICT naming body/decisionId (before: 202, and whichever job applied first won).
 * - A client-chosen decision id recorded once: of allocations racing for it, one is 200 and the others 409 ID_TAKEN
 *   (before: all 200, the last write overwrote the record the first answer described); likewise two local-mode batches
 *   racing with one id (POST /v1/decisions/batch).
 *
 * Nothing is timed: waits are for states, with generous limits.
 */
const prefix = testPrefix('outcome-receipts');
const world = generateWorld(40213);
let api: Running;
let workers: Running | undefined;

const inject = async (method: string, url: string, payload?: unknown) => {
  const r = await api.app!.inject({ method: method as 'GET', url, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, json: r.body ? r.json() : undefined, text: r.body };
};
/**
 * An outcome report as a client sends it (the SDK's reportOutcome): a 503 is retried. On a busy machine an allocation's
 * record can land after its answer (`recorded: false`), and a report sent at once is then 503 DECISION_PENDING.
 */
const report = async (payload: unknown) => {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await inject('POST', '/v1/outcomes', payload);
    if (r.status !== 503 || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
};
const ok = async (method: string, url: string, payload?: unknown) => {
  const r = await inject(method, url, payload);
  assert.ok(r.status < 300, `${method} ${url} → ${r.status} ${r.text}`);
  return r.json;
};
const statsN = async (pipeline: string, strategy: string) => {
  const h = await api.core.redis.hgetall(api.core.keys.pipeline(pipeline, 'stats', 'strategy', strategy));
  return { n: Number(h.n ?? 0), q: Number(h.q_mean ?? 0) };
};

before(async () => {
  api = await startTest(prefix, { workers: false });
});
after(async () => {
  await workers?.close();
  await api?.close();
  await dropPrefix(prefix);
});

describe('outcome receipts', { timeout: 300_000 }, () => {
  it('an outcome accepted in time is the learner event even when the default sweep runs before it is applied; one decision, one event', async () => {
    await declare({ world, pipeline: 'rx', strategy: 'rx-learn', admin: ok });
    const rng = mulberry32(9);
    const lk = learnerKeys(api.core.keys, 'rx');
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'rx', strategy: 'rx-learn', features: world.features(world.sample(rng)) });
      assert.equal(a.recorded, true);
      ids.push(a.decisionId);
    }
    // Every decision registered for the default reward (the batched registration landed).
    await eventually(async () => (await api.core.redis.zcard(lk.pending)) === ids.length);
    // Five get outcomes now, with the workers stopped: accepted, queued, not applied.
    const early = ids.slice(0, 5);
    const quality = (i: number) => 0.11 * (i + 1);
    for (const [i, id] of early.entries()) {
      const r = await report({ decisionId: id, quality: quality(i) });
      assert.equal(r.status, 202, r.text);
    }
    // A client's identical retry of an accepted report: 202, and queued again (a second job for the decision); the
    // worker's applied-marker absorbs it: no second count in the statistics, the learner events or the retrain trigger.
    const dup = await report({ decisionId: early[0], quality: quality(0) });
    assert.equal(dup.status, 202, dup.text);
    // The sweep runs past every wait window (600 s + 30 s) before any of them is applied, within the watch that
    // follows (another wait window: outcomeWatchEnd).
    const learner = api.modules.find((m) => m.name === 'learner') as LearnerModule;
    const swept = await learner.training.ingest('rx', Date.now() + 700_000);
    assert.equal(swept.defaulted, 3, 'the three decisions without an outcome get the default reward, the five with one do not');
    // An outcome for a decision the sweep already defaulted: accepted and counted in the statistics, not logged again.
    const late = ids[5]!;
    const lateR = await report({ decisionId: late, quality: 0.99 });
    assert.equal(lateR.status, 202, lateR.text);

    // The five are still pending: watched for their jobs.
    for (const id of early) assert.notEqual(await api.core.redis.zscore(lk.pending, id), null, `decision ${id} watched`);
    // Now the workers, before the watch ends: every queued outcome is applied.
    workers = await startTest(prefix, { api: false, workers: true });
    await eventually(async () => (await statsN('rx', 'rx-learn')).n === 6, 120_000);
    // Every job done (the duplicate's included), so every applied outcome's hooks have run.
    const outcomeQueue = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    await eventually(async () => {
      const c = await outcomeQueue.getJobCounts('wait', 'active', 'delayed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
    }, 120_000);
    assert.equal((await statsN('rx', 'rx-learn')).n, 6, 'six decisions with an outcome, each counted once');
    // The retrain trigger counts the five outcomes that are learner events: not the late one (it adds no training
    // event), nor the duplicate. Checked to fail before: 6 (every applied outcome was counted).
    assert.equal(Number(await api.core.redis.hget(lk.counters, 'outcomes')), 5, 'outcomes counted towards trainEvery');
    await eventually(async () => {
      await learner.training.ingest('rx');
      return (await learner.training.events('rx', 1000)).length >= ids.length;
    }, 120_000);
    await learner.training.ingest('rx', Date.now() + 86_400_000);
    const events = await learner.training.events('rx', 1000);
    for (const id of ids) {
      const mine = events.filter((e) => e.id === id);
      assert.equal(mine.length, 1, `decision ${id}: ${mine.length} learner events`);
    }
    for (const [i, id] of early.entries()) {
      const e = events.find((x) => x.id === id)!;
      assert.equal(e.d ?? 0, 0, `decision ${i} was given the default reward though its outcome was accepted in time`);
      assert.equal(e.q, quality(i));
    }
    for (const id of ids.slice(5)) assert.equal(events.find((x) => x.id === id)!.d, 1, 'no outcome (or one after the sweep): the default reward');
  });

  it('an outcome received in time is the learner event if its job is applied before the watch ends, else the default reward; seeded interleavings, one event each', async () => {
    // Three fates per decision, drawn from a seed: its outcome's job applied before the sweep past the watch
    // (outcomeWatchEnd: the wait window again after it), applied after that sweep (the default reward stands, the
    // outcome counts in the statistics and its event is dropped as late), or lost (a receipt with no job: a 503
    // OUTCOME_UNCONFIRMED never retried; the receipt is written here as intake writes it). Whether a sweep also runs
    // inside the watch, while the 'after' jobs wait, is drawn too (the first test has a sweep inside the watch before
    // a job is applied). Checked to fail before: a lost job left its
    // decision with no learner event, and the sweep inside the watch no longer defaults anything.
    await workers?.close();
    workers = undefined;
    await declare({ world, pipeline: 'rw', strategy: 'rw-learn', admin: ok });
    const learner = api.modules.find((m) => m.name === 'learner') as LearnerModule;
    const lk = learnerKeys(api.core.keys, 'rw');
    const store = new DecisionStore(api.core.redis, api.core.keys, api.core.config.rewardWindowSeconds);
    const outcomeQueue = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    // Every workers runtime started here: an ingest tick of theirs may be the one that drops a late event, and counts it.
    const ran: Running[] = [];
    /** Starts the workers, waits until the decisions' outcomes are applied and every job is done, stops them. */
    const applyAll = async (ids: readonly string[]) => {
      const w = await startTest(prefix, { api: false, workers: true });
      ran.push(w);
      try {
        await eventually(async () => (await Promise.all(ids.map((id) => isApplied(api.core.redis, api.core.keys, 'rw', id)))).every(Boolean), 120_000);
        await eventually(async () => {
          const c = await outcomeQueue.getJobCounts('wait', 'active', 'delayed');
          return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
        }, 120_000);
      } finally {
        await w.close();
      }
    };
    /** apportion_learner_events_total{result="late"} of the API's runtime and every workers runtime started here. */
    const lateHere = async () => {
      let n = 0;
      for (const rt of [api, ...ran]) n += (await rt.core.metrics.learnerEvents.get()).values.find((v) => v.labels.result === 'late')?.value ?? 0;
      return n;
    };
    let counted = 0;
    for (const seed of [11, 12, 13]) {
      const rng = mulberry32(seed);
      const n = 6 + Math.floor(rng() * 5);
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const a = await ok('POST', '/v1/allocations', { pipeline: 'rw', strategy: 'rw-learn', features: world.features(world.sample(rng)) });
        assert.equal(a.recorded, true);
        ids.push(a.decisionId);
      }
      await eventually(async () => (await Promise.all(ids.map((id) => api.core.redis.zscore(lk.pending, id)))).every((s) => s !== null));
      const fates = ids.map(() => (['before', 'after', 'lost'] as const)[Math.floor(rng() * 3)]!);
      const quality = ids.map(() => Math.round(rng() * 100) / 100);
      const sweepInside = rng() < 0.5;
      const which = (f: string) => ids.filter((_, i) => fates[i] === f);
      const late0 = await lateHere();
      for (const [i, id] of ids.entries()) {
        if (fates[i] === 'before') assert.equal((await report({ decisionId: id, quality: quality[i] })).status, 202);
        if (fates[i] === 'lost') assert.equal((await store.receipt(id, `lost${String(i).padStart(7, '0')}`)).kind, 'new');
      }
      await applyAll(which('before'));
      for (const [i, id] of ids.entries()) if (fates[i] === 'after') assert.equal((await report({ decisionId: id, quality: quality[i] })).status, 202);
      if (sweepInside) {
        // Past every wait window, inside every watch: nothing is defaulted; the decisions whose outcome was applied
        // are resolved by it, the others stay pending, watched for their jobs.
        const r = await learner.training.ingest('rw', Date.now() + 700_000);
        assert.equal(r.defaulted, 0, `seed ${seed}: defaulted inside the watch`);
        for (const [i, id] of ids.entries()) {
          const pending = (await api.core.redis.zscore(lk.pending, id)) !== null;
          assert.equal(pending, fates[i] !== 'before', `seed ${seed}: decision ${i} (${fates[i]}) pending: ${pending}`);
        }
      }
      // The sweep past every watch, before the 'after' jobs are applied.
      await learner.training.ingest('rw', Date.now() + 86_400_000);
      await applyAll(which('after'));
      await learner.training.ingest('rw', Date.now() + 86_400_000);
      const events = await learner.training.events('rw', 1000);
      for (const [i, id] of ids.entries()) {
        const mine = events.filter((e) => e.id === id);
        assert.equal(mine.length, 1, `seed ${seed}, decision ${i} (${fates[i]}): ${mine.length} learner events`);
        if (fates[i] === 'before') {
          assert.equal(mine[0]!.d ?? 0, 0, `seed ${seed}, decision ${i}: applied in time, yet the default reward`);
          assert.equal(mine[0]!.q, quality[i]);
        } else assert.equal(mine[0]!.d, 1, `seed ${seed}, decision ${i} (${fates[i]}): the default reward`);
      }
      // A tick's ingest counts what it dropped when it returns (maybe after its runtime was closed): wait for the count.
      await eventually(async () => (await lateHere()) - late0 >= which('after').length, 60_000).catch(() => undefined);
      assert.equal((await lateHere()) - late0, which('after').length, `seed ${seed}: the outcomes applied after the watch counted as late`);
      counted += which('before').length + which('after').length;
      assert.equal((await statsN('rw', 'rw-learn')).n, counted, `seed ${seed}: every applied outcome counted once in the statistics`);
    }
  });

  it('the first report wins: the same report again is absorbed, a different one is 409 OUTCOME_CONFLICT', async () => {
    await ok('PUT', '/v1/pipelines/rc', FIVE_AGENTS);
    const a = await ok('POST', '/v1/allocations', { pipeline: 'rc' });
    const first = { decisionId: a.decisionId, quality: 0.3, usage: { orchestrator: { inputTokens: 10, outputTokens: 5 } } };
    assert.equal((await report(first)).status, 202);
    // The same report, its keys in another order: a retry.
    const again = await report({ usage: { orchestrator: { outputTokens: 5, inputTokens: 10 } }, quality: 0.3, decisionId: a.decisionId });
    assert.equal(again.status, 202, again.text);
    const other = await report({ decisionId: a.decisionId, quality: 0.9 });
    assert.equal(other.status, 409, other.text);
    assert.equal(other.json.code, 'OUTCOME_CONFLICT');
    assert.match(other.json.message, /body\/decisionId/);
    // Two different reports at once for a fresh decision: exactly one is accepted.
    const b = await ok('POST', '/v1/allocations', { pipeline: 'rc' });
    const raced = await Promise.all([0.2, 0.4, 0.6, 0.8].map((q) => report({ decisionId: b.decisionId, quality: q })));
    assert.deepEqual(raced.map((r) => r.status).sort(), [202, 409, 409, 409]);
    const won = [0.2, 0.4, 0.6, 0.8][raced.findIndex((r) => r.status === 202)]!;
    workers ??= await startTest(prefix, { api: false, workers: true });
    const strategy = a.strategy as string;
    await eventually(async () => (await statsN('rc', strategy)).n === 2, 120_000);
    // Let every queued job run (the duplicate's included) before reading the moments.
    const outcomes = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    await eventually(async () => {
      const c = await outcomes.getJobCounts('wait', 'active', 'delayed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
    }, 120_000);
    const s = await statsN('rc', strategy);
    assert.equal(s.n, 2, 'each decision counted once');
    assert.ok(Math.abs(s.q - (0.3 + won) / 2) < 1e-9, `mean quality ${s.q}: the first reports, ${0.3} and ${won}`);
  });

  it('a client-chosen decision id is recorded once: of allocations racing for it, one is 200 and the others 409 ID_TAKEN', async () => {
    await ok('PUT', '/v1/pipelines/rd', FIVE_AGENTS);
    await ok('PUT', '/v1/pipelines/rd2', FIVE_AGENTS);
    for (let round = 0; round < 5; round++) {
      const id = newDecisionId();
      const res = await Promise.all(['rd', 'rd2', 'rd', 'rd2'].map((pipeline, i) => inject('POST', '/v1/allocations', { pipeline, decisionId: id, totalTokens: 10_000 + i * 1000 })));
      const okd = res.filter((r) => r.status === 200);
      assert.equal(okd.length, 1, `round ${round}: ${res.map((r) => r.status).join(',')}`);
      for (const r of res.filter((x) => x.status !== 200)) {
        assert.equal(r.status, 409, r.text);
        assert.equal(r.json.code, 'ID_TAKEN');
        assert.match(r.json.message, /body\/decisionId/);
      }
      // The record is the one the 200 described.
      const rec = await readDecision(api.core.redis, api.core.keys, id);
      assert.equal(rec?.pipeline, okd[0]!.json.pipeline);
      assert.equal(rec?.totalTokens, okd[0]!.json.totalTokens);
    }
  });

  it('two local-mode batches racing with one decision id: it is written once, the other batch counts it a duplicate or refuses it', async () => {
    await ok('PUT', '/v1/pipelines/rb', FIVE_AGENTS);
    await ok('PUT', '/v1/pipelines/rb2', FIVE_AGENTS);
    const local = (pipeline: string, id: string, total: number) => ({
      id,
      ts: Date.now(),
      pipeline,
      pipelineVersion: 1,
      strategy: '@uniform',
      strategyVersion: 0,
      strategyKind: 'uniform',
      reason: 'default',
      features: {},
      totalTokens: total,
      budgets: { orchestrator: 2000, retriever: 2000, reasoner: 2000, validator: 2000, formatter: 2000 },
    });
    for (let round = 0; round < 5; round++) {
      const id = newDecisionId();
      const res = await Promise.all([
        inject('POST', '/v1/decisions/batch', { decisions: [local('rb', id, 10_000)] }),
        inject('POST', '/v1/decisions/batch', { decisions: [local('rb2', id, 10_000)] }),
      ]);
      for (const r of res) assert.equal(r.status, 200, r.text);
      const accepted = res.reduce((s, r) => s + (r.json.accepted as number), 0);
      assert.equal(accepted, 1, `round ${round}: ${res.map((r) => r.text).join(' | ')}`);
      const loser = res.find((r) => r.json.accepted === 0)!;
      assert.equal(loser.json.rejected[0]?.code, 'ID_TAKEN', loser.text);
      const rec = await readDecision(api.core.redis, api.core.keys, id);
      assert.equal(rec?.pipeline, res.find((r) => r.json.accepted === 1) === res[0] ? 'rb' : 'rb2');
    }
  });
});
