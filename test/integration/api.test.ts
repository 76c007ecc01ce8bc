import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('api');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

before(async () => {
  rt = await startTest(prefix);
  assert.equal((await call('PUT', '/v1/pipelines/support', FIVE_AGENTS)).statusCode, 200);
  const est = await call('PUT', '/v1/strategies/est', {
    pipeline: 'support',
    kind: 'estimate',
    params: { margin: 1, agents: { reasoner: { base: 2000, per: { messageCount: 100 } }, formatter: { base: 150 } } },
  });
  assert.equal(est.statusCode, 200, est.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('allocate → outcome → stats', () => {
  it('round-trips one decision into the strategy statistics', async () => {
    const alloc = await call('POST', '/v1/allocations', { pipeline: 'support', strategy: 'est', features: { messageCount: 10 } });
    assert.equal(alloc.statusCode, 200, alloc.body);
    const a = alloc.json();
    assert.equal(a.reason, 'requested');
    assert.equal(a.strategy, 'est');
    assert.equal(a.budgets.reasoner.tokens, 3000);
    assert.equal(a.budgets.formatter.tokens, 150);
    assert.equal(a.recorded, true);

    const out = await call('POST', '/v1/outcomes', {
      decisionId: a.decisionId,
      quality: 0.8,
      costUsd: 0.02,
      usage: { reasoner: { inputTokens: 2000, outputTokens: 1000 }, formatter: { outputTokens: 10, truncated: true } },
    });
    assert.equal(out.statusCode, 202, out.body);

    const stats = await eventually(async () => {
      const s = (await call('GET', '/v1/strategies/est/stats')).json();
      return s.count === 1 ? s : undefined;
    });
    assert.equal(stats.quality.mean, 0.8);
    assert.equal(stats.cost.mean, 0.02);
    assert.equal(stats.agents.reasoner.utilization, 1);
    assert.equal(stats.agents.reasoner.ceilingHitRate, 1);
    assert.equal(stats.agents.formatter.ceilingHitRate, 1, 'truncation counts as a ceiling hit');
    assert.ok(Math.abs(stats.agents.formatter.utilization - 10 / 150) < 1e-12);
  });

  it('counts the same decisionId reported twice once', async () => {
    const a = (await call('POST', '/v1/allocations', { pipeline: 'support' })).json();
    assert.equal(a.reason, 'default');
    assert.equal(a.strategy, '@uniform');
    const body = { decisionId: a.decisionId, quality: 0.5 };
    const [r1, r2] = await Promise.all([call('POST', '/v1/outcomes', body), call('POST', '/v1/outcomes', body)]);
    assert.equal(r1.statusCode, 202);
    assert.equal(r2.statusCode, 202);
    await eventually(async () => (await call('GET', '/v1/strategies/@uniform/stats?pipeline=support')).json().count === 1);
    // A third report after the first was applied is absorbed too.
    assert.equal((await call('POST', '/v1/outcomes', body)).statusCode, 202);
    const queue = rt.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    await eventually(async () => {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed');
      return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) === 0;
    });
    assert.equal((await call('GET', '/v1/strategies/@uniform/stats?pipeline=support')).json().count, 1);
  });

  it('a burst of outcomes shares jobs (group commit) and each is counted exactly once', async () => {
    assert.equal((await call('PUT', '/v1/strategies/burst', { pipeline: 'support', kind: 'uniform' })).statusCode, 200);
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push((await call('POST', '/v1/allocations', { pipeline: 'support', strategy: 'burst' })).json().decisionId);
    const batchMetric = async () => {
      const text = (await call('GET', '/metrics')).body;
      const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      return { jobs: read('apportion_outcome_batch_size_count'), outcomes: read('apportion_outcome_batch_size_sum') };
    };
    const before = await batchMetric();
    // Every outcome once with quality i/300, plus a duplicate report of the first 60.
    const bodies = ids.map((id, i) => ({ decisionId: id, quality: i / 300 }));
    bodies.push(...bodies.slice(0, 60));
    const answers = await Promise.all(bodies.map((b) => call('POST', '/v1/outcomes', b)));
    assert.deepEqual([...new Set(answers.map((r) => r.statusCode))], [202]);
    const after = await batchMetric();
    assert.equal(after.outcomes - before.outcomes, 360, 'every accepted outcome was written to a job');
    assert.ok(after.jobs - before.jobs < 360, `outcomes shared jobs (${after.jobs - before.jobs} jobs for 360 outcomes)`);
    const stats = await eventually(async () => {
      const st = (await call('GET', '/v1/strategies/burst/stats')).json();
      return st.count >= 300 ? st : undefined;
    });
    const queue = rt.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    await eventually(async () => {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed');
      return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) === 0;
    });
    const final = (await call('GET', '/v1/strategies/burst/stats')).json();
    assert.equal(final.count, 300);
    assert.equal(stats.count, 300);
    const mean = ids.reduce((acc, _, i) => acc + i / 300, 0) / 300;
    assert.ok(Math.abs(final.quality.mean - mean) < 1e-12, 'each decision counted once, duplicates ignored');
  });

  it('averages many outcomes exactly (Welford moments in Lua)', async () => {
    const qs = [0.1, 0.4, 0.9, 0.6, 0.5];
    for (const [i, q] of qs.entries()) {
      const a = (await call('POST', '/v1/allocations', { pipeline: 'support', strategy: 'est' })).json();
      // One with `usage: {}` (no agent made a call, e.g. SpanRecorder.usageFor on a request that failed early).
      const usage = i === 2 ? { usage: {} } : {};
      assert.equal((await call('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: q, ...usage })).statusCode, 202);
    }
    const s = await eventually(async () => {
      const st = (await call('GET', '/v1/strategies/est/stats')).json();
      return st.count === 6 ? st : undefined;
    });
    const all = [0.8, ...qs];
    const mean = all.reduce((x, y) => x + y, 0) / all.length;
    const variance = all.reduce((x, y) => x + (y - mean) ** 2, 0) / (all.length - 1);
    assert.ok(Math.abs(s.quality.mean - mean) < 1e-12);
    assert.ok(Math.abs(s.quality.variance - variance) < 1e-12);
    assert.equal(s.cost.n, 1, 'outcomes without a cost and without prices (or with no reporting agent) leave cost unknown, not zero');
  });
});

describe('fallbacks never fail the request', () => {
  it('falls back to the pipeline default, then uniform, and says so', async () => {
    // A static strategy whose agent is later removed from the pipeline can no longer compile.
    await call('PUT', '/v1/pipelines/shrink', { defaultTotalTokens: 1000, agents: [{ name: 'x' }, { name: 'y' }] });
    assert.equal((await call('PUT', '/v1/strategies/shr-static', { pipeline: 'shrink', kind: 'static', params: { shares: { y: 1 } } })).statusCode, 200);
    await call('PUT', '/v1/pipelines/shrink', { defaultTotalTokens: 1000, agents: [{ name: 'x' }] });
    const r = await call('POST', '/v1/allocations', { pipeline: 'shrink', strategy: 'shr-static' });
    assert.equal(r.statusCode, 200, r.body);
    const a = r.json();
    assert.equal(a.reason, 'fallback');
    assert.equal(a.strategy, '@uniform');
    assert.equal(a.fallback.from, 'shr-static');
    assert.match(a.fallback.error, /no agent "y"/);
    assert.deepEqual(a.budgets, { x: { tokens: 1000 } });
  });
});

describe('control plane', () => {
  it('bumps the pipeline version on every change and decisions record it', async () => {
    const v1 = (await call('PUT', '/v1/pipelines/ver', { defaultTotalTokens: 100, agents: [{ name: 'a' }] })).json().version;
    const v2 = (await call('PUT', '/v1/pipelines/ver', { defaultTotalTokens: 200, agents: [{ name: 'a' }] })).json().version;
    assert.equal(v2, v1 + 1);
    const a = (await call('POST', '/v1/allocations', { pipeline: 'ver' })).json();
    assert.equal(a.pipelineVersion, v2);
    assert.equal(a.totalTokens, 200);
  });

  it('lists, gets and deletes (deleting a pipeline deletes its strategies)', async () => {
    await call('PUT', '/v1/pipelines/gone', { defaultTotalTokens: 100, agents: [{ name: 'a' }] });
    await call('PUT', '/v1/strategies/gone-u', { pipeline: 'gone', kind: 'uniform' });
    assert.ok((await call('GET', '/v1/pipelines')).json().items.some((p: { id: string }) => p.id === 'gone'));
    assert.deepEqual((await call('GET', '/v1/strategies?pipeline=gone')).json().items.map((s: { id: string }) => s.id), ['gone-u']);
    assert.equal((await call('DELETE', '/v1/pipelines/gone')).statusCode, 204);
    assert.equal((await call('GET', '/v1/pipelines/gone')).statusCode, 404);
    assert.equal((await call('GET', '/v1/strategies/gone-u')).statusCode, 404);
  });
});

describe('operations', () => {
  it('serves health, readiness, metrics and the OpenAPI document', async () => {
    assert.equal((await call('GET', '/healthz')).statusCode, 200);
    const ready = await call('GET', '/readyz');
    assert.equal(ready.statusCode, 200, ready.body);
    assert.deepEqual(ready.json(), { status: 'ready', redis: true, writable: true, workers: true });
    const metrics = await call('GET', '/metrics');
    assert.match(metrics.body, /apportion_allocations_total\{strategy="est",reason="requested"\}/);
    assert.match(metrics.body, /apportion_queue_jobs\{queue="outcomes",state="completed"\}/);
    assert.match(metrics.body, /apportion_http_request_duration_seconds_bucket/);
    const doc = (await call('GET', '/docs/json')).json();
    assert.ok(doc.paths['/v1/allocations']);
  });
});
