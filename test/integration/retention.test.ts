import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { decisionSecond, newDecisionId, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { ControlView } from '../../src/control/view.js';
import { trimTraceIndex } from '../../src/costs/ingest.js';
import { strategyArms } from '../../src/feedback/arms.js';
import { appliedMarker, applyOutcome, isApplied, markerDeadline } from '../../src/feedback/processor.js';
import { createOutcomesQueue } from '../../src/feedback/queue.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { pruneModelVersions } from '../../src/learner/prune.js';
import type { ModelDoc, ModelSummary } from '../../src/learner/registry.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';
import { readObservations } from '../../src/rollout/service.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, REDIS_URL, startTest, testPrefix, testRedis } from '../helpers/env.js';
import { sampleRecord } from '../helpers/write-slots.js';

const prefix = testPrefix('retention');
const keys = createKeys(prefix);
const redis = testRedis(prefix, { maxRetriesPerRequest: null });

const redisNow = async () => Number((await redis.time())[0]);

function decisionAt(sec: number): DecisionRecord {
  return { ...sampleRecord(newDecisionId(sec * 1000)), ts: sec * 1000 + 5 };
}

describe('applied-markers live as long as the reward window needs', () => {
  const view = () => ({ pipelines: new Map() }) as unknown as ControlView;
  const deps = (window: number, grace: number) => ({ redis, keys, view, arms: [strategyArms(keys)], rewardWindowSeconds: window, markerGraceSeconds: grace });
  const count = async () => Number((await redis.hget(keys.pipeline('p', 'stats', 'strategy', 's'), 'n')) ?? 0);

  it('a duplicate within the window is refused; after the marker deadline the outcome is refused as expired, never counted twice', async () => {
    const now = await redisNow();
    // Window 1 s, grace 60 s: a decision made 60 s ago has its marker deadline 2 s from now.
    const d = decisionAt(now - 60);
    const dl = markerDeadline(d, 1, 60);
    assert.equal(dl, now + 2);
    const before = await count();
    assert.equal(await applyOutcome(deps(1, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.5 }, receivedAt: Date.now() }), 'applied');
    assert.equal(await applyOutcome(deps(1, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.9 }, receivedAt: Date.now() }), 'duplicate');
    const marker = appliedMarker(keys, 'p', d.id);
    assert.match(marker.key, new RegExp(`:applied:${decisionSecond(d.id)}:[0-7]$`));
    assert.equal(await isApplied(redis, keys, 'p', d.id), true);
    assert.equal(await redis.object('ENCODING', marker.key), 'intset', 'an integer member: the set stays an intset');
    assert.equal(await redis.expiretime(marker.key), dl, 'the marker set expires at the deadline');
    assert.equal(await count(), before + 1);
    // The boundary: once Redis's clock reaches the deadline a redelivery is refused, not applied again.
    await eventually(async () => (await redisNow()) >= dl, 10_000, 100);
    assert.equal(await applyOutcome(deps(1, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.5 }, receivedAt: Date.now() }), 'expired');
    assert.equal(await count(), before + 1, 'counted once');
  });

  it('an outcome for a decision past its deadline is refused and leaves no marker', async () => {
    const now = await redisNow();
    const d = decisionAt(now - 100);
    const before = await count();
    assert.equal(await applyOutcome(deps(1, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.5 }, receivedAt: Date.now() }), 'expired');
    assert.equal(await count(), before);
    assert.equal(await redis.exists(appliedMarker(keys, 'p', d.id).key), 0);
  });

  it('a decision id without a time prefix has no marker: no decision record has one, so it is a bug that throws', () => {
    assert.throws(() => appliedMarker(keys, 'p', 'f47ac10b-58cc-4372-a567-0e02b2c3d479'), /has no time prefix/);
    assert.throws(() => markerDeadline({ id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479' }, 1, 60), /has no time prefix/);
  });

  it('decisions of one second share eight marker sets; each is applied once', async () => {
    const now = await redisNow();
    const ds = Array.from({ length: 50 }, () => decisionAt(now - 3));
    const before = await count();
    const first = await Promise.all(ds.map((d) => applyOutcome(deps(3600, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.1 }, receivedAt: 0 })));
    const again = await Promise.all(ds.map((d) => applyOutcome(deps(3600, 60), { decision: d, outcome: { decisionId: d.id, quality: 0.1 }, receivedAt: 0 })));
    assert.deepEqual(first, ds.map(() => 'applied'));
    assert.deepEqual(again, ds.map(() => 'duplicate'));
    assert.equal(await count(), before + 50);
    let members = 0;
    for (let k = 0; k < 8; k++) members += await redis.scard(keys.pipeline('p', 'applied', String(now - 3), String(k)));
    assert.equal(members, 50);
    assert.deepEqual(await Promise.all(ds.map((d) => isApplied(redis, keys, 'p', d.id))), ds.map(() => true));
  });
});

describe('bounded indexes, jobs and model versions', () => {
  it('finished outcome jobs are trimmed by count', async () => {
    const bull = `${prefix}:bull-trim`;
    const queue = createOutcomesQueue(redis, bull, { completedAgeSeconds: 3600, completedCount: 3, failedAgeSeconds: 3600, failedCount: 3 });
    let done = 0;
    const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const worker = new Worker('outcomes', async () => void done++, { connection: conn, prefix: bull });
    try {
      for (let i = 0; i < 10; i++) await queue.add('outcomes', { outcomes: [] });
      await eventually(() => done === 10 && (async () => ((await queue.getJobCounts('active', 'wait')).active ?? 0) === 0)());
      await eventually(async () => (await queue.getJobCounts('completed')).completed === 3);
      const [job] = await queue.getJobs(['completed'], 0, 0);
      assert.deepEqual(job!.opts.removeOnComplete, { age: 3600, count: 3 });
      assert.deepEqual(job!.opts.removeOnFail, { age: 3600, count: 3 });
    } finally {
      await worker.close();
      await queue.close();
      conn.disconnect();
    }
  });

  it('a pipeline trace index loses the entries older than the retention', async () => {
    const z = keys.pipeline('p', 'cost-traces');
    const now = Date.now();
    await redis.zadd(z, String(now - 120_000), 'old-1/t', String(now - 61_000), 'old-2/t', String(now - 30_000), 'new-1/t', String(now), 'new-2/t');
    assert.equal(await trimTraceIndex(redis, z, 60, now), 2);
    assert.deepEqual(await redis.zrange(z, '0', '-1'), ['new-1/t', 'new-2/t']);
  });

  it('model versions: the newest N, the serving one, the candidate and every version that ever served are kept', async () => {
    const lk = learnerKeys(keys, 'pm');
    for (let v = 1; v <= 30; v++) await redis.hset(lk.models, String(v), JSON.stringify({ version: v }));
    const summary = (version: number, activatedAt?: number): ModelSummary => ({ version, createdAt: 0, signature: '', agents: [], metrics: {} as ModelSummary['metrics'], ...(activatedAt ? { activatedAt } : {}) });
    const doc = { pipeline: 'pm', active: 7, signature: '', agents: [], activatedAt: 1, versions: [summary(12), summary(7, 2), summary(3, 1)], candidate: { version: 20 } } as unknown as ModelDoc;
    const dropped = await pruneModelVersions(redis, keys, 'pm', doc, 5);
    const left = (await redis.hkeys(lk.models)).map(Number).sort((a, b) => a - b);
    assert.deepEqual(left, [3, 7, 20, 26, 27, 28, 29, 30]);
    assert.equal(dropped.length, 22);
    // Later: version 3 has dropped out of the document's listing; it served, so it stays.
    for (let v = 31; v <= 40; v++) await redis.hset(lk.models, String(v), '{}');
    const later = { ...doc, active: 40, versions: [summary(40, 5)], candidate: undefined } as unknown as ModelDoc;
    await pruneModelVersions(redis, keys, 'pm', later, 5);
    assert.deepEqual((await redis.hkeys(lk.models)).map(Number).sort((a, b) => a - b), [3, 7, 36, 37, 38, 39, 40]);
  });

  it('experiment observations are read in bounded pages, newest first', async () => {
    const key = keys.pipeline('p', 'stats', 'exp', 'e', '0', 'v', 'obs');
    const all = Array.from({ length: 4500 }, (_, i) => JSON.stringify([i / 4500, null, [], []]));
    for (let i = 0; i < all.length; i += 500) await redis.lpush(key, ...all.slice(i, i + 500));
    const some = await readObservations(redis, key, 4100);
    assert.equal(some.length, 4100);
    assert.equal(some[0]![0], 4499 / 4500, 'newest first');
    assert.equal(some[4099]![0], (4499 - 4099) / 4500);
    assert.equal((await readObservations(redis, key)).length, 4500);
  });
});

describe('end to end: every outcome counted once, duplicates and all', () => {
  let rt: Running;
  const rtPrefix = `${prefix}-e2e`;
  before(async () => {
    rt = await startTest(rtPrefix, {}, { APPORTION_JOB_KEEP_COMPLETED_COUNT: '5', APPORTION_OUTCOME_BATCH_MAX: '8' });
    assert.equal((await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: FIVE_AGENTS })).statusCode, 200);
  });
  after(async () => {
    await rt.close();
    await dropPrefix(rtPrefix);
  });

  it('reports sent one to three times each, shuffled, are counted exactly once each; kept jobs stay bounded', async () => {
    const rnd = mulberry32(1616);
    const ids: string[] = [];
    for (let i = 0; i < 120; i++) {
      const a = await rt.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p', features: { n: i } } });
      ids.push(a.json().decisionId as string);
    }
    const reports = ids.flatMap((id) => Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => id));
    for (let i = reports.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [reports[i], reports[j]] = [reports[j]!, reports[i]!];
    }
    // Sent at once, as a client's retries would be; a 503 (a Redis command past its 1 s bound on a busy machine) is
    // retried with the same report as the service asks, so the retry path is part of what is counted exactly once.
    const unavailable = new Set(['REDIS_UNAVAILABLE', 'QUEUE_UNAVAILABLE', 'OUTCOME_UNCONFIRMED']);
    const send = async (id: string): Promise<number> => {
      for (let attempt = 1; ; attempt++) {
        const res = await rt.app!.inject({ method: 'POST', url: '/v1/outcomes', payload: { decisionId: id, quality: 0.5, usage: { reasoner: { inputTokens: 10, outputTokens: 5 } } } });
        if (res.statusCode !== 503 || attempt === 20) return res.statusCode;
        assert.ok(unavailable.has(res.json().code as string), `a 503 is a dependency refusal: ${res.body}`);
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    };
    const codes = await Promise.all(reports.map(send));
    assert.deepEqual(new Set(codes), new Set([202]));
    const queue = rt.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    const count = async () => (await rt.app!.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json().count as number;
    await eventually(async () => {
      const c = await queue.getJobCounts('wait', 'active', 'delayed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0 && (await count()) >= ids.length;
    });
    assert.equal(await count(), ids.length, 'every decision counted once');
    await eventually(async () => ((await queue.getJobCounts('completed')).completed ?? 0) <= 5);
    // No retained job carries a full decision record.
    for (const job of await queue.getJobs(['completed'])) {
      for (const o of (job.data as { outcomes: Record<string, unknown>[] }).outcomes) {
        assert.equal(o.decision, undefined);
        assert.equal(typeof o.r, 'string');
      }
    }
  });
});
