import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { blendedRate, withinCeiling } from '@apportion/sdk/engine';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/**
 * How models are priced and named on pipelines with model tiers: an outcome is priced on the model its decision
 * served, whatever the pipeline became since; model names are checked when a pipeline is written.
 */
const prefix = testPrefix('tiers-pricing');
let rt: Running;

async function call(method: string, url: string, payload?: unknown): Promise<LightMyRequestResponse> {
  return rt.app!.inject({ method: method as 'GET', url, ...(payload !== undefined ? { payload: payload as object } : {}) });
}
async function ok(method: string, url: string, payload?: unknown): Promise<Record<string, any>> {
  const r = await call(method, url, payload);
  assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
  return r.body ? (r.json() as Record<string, any>) : {};
}
async function statsAfter(strategy: string, count: number): Promise<Record<string, any>> {
  return eventually(async () => {
    const s = await ok('GET', `/v1/strategies/${strategy}/stats`);
    return s.count >= count ? s : undefined;
  }, 60_000);
}

before(async () => {
  rt = await startTest(prefix, { workers: true });
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('outcome cost after a pipeline update', () => {
  it('an outcome is priced on the model its decision served, not on the current first model', async () => {
    const both = [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }];
    await ok('PUT', '/v1/pipelines/pr-a', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: both }, { name: 'b', models: both }] });
    await ok('PUT', '/v1/strategies/pr-a-uni', { pipeline: 'pr-a', kind: 'uniform' });
    const d = await ok('POST', '/v1/allocations', { pipeline: 'pr-a', strategy: 'pr-a-uni' });
    assert.equal(d.budgets.a.model, 'claude-opus-4-1');
    // The update drops opus: the decision's agents ran on opus all the same.
    await ok('PUT', '/v1/pipelines/pr-a', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: 'claude-haiku-4-5' }] }, { name: 'b', models: [{ model: 'claude-haiku-4-5' }] }] });
    await ok('POST', '/v1/outcomes', { decisionId: d.decisionId, quality: 0.5, usage: { a: { inputTokens: 1000, outputTokens: 100 }, b: { inputTokens: 2000, outputTokens: 200 } } });
    const s = await statsAfter('pr-a-uni', 1);
    const opus = (3000 * 15 + 300 * 75) / 1e6;
    assert.equal(s.cost.n, 1);
    assert.ok(Math.abs(s.cost.mean - opus) < 1e-12, `cost ${s.cost.mean}: opus prices ${opus} (haiku would be ${(3000 + 300 * 5) / 1e6})`);
  });

  it('a served model nothing prices any more leaves the cost unknown: counted, not priced as another model', async () => {
    await ok('PUT', '/v1/price-overrides/default', { models: [{ model: 'in-house-7b', inputMTok: 0.05, outputMTok: 0.1 }] });
    await ok('PUT', '/v1/pipelines/pr-b', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: 'in-house-7b' }, { model: 'claude-haiku-4-5' }] }] });
    await ok('PUT', '/v1/strategies/pr-b-uni', { pipeline: 'pr-b', kind: 'uniform' });
    const d = await ok('POST', '/v1/allocations', { pipeline: 'pr-b', strategy: 'pr-b-uni' });
    assert.equal(d.budgets.a.model, 'in-house-7b');
    await ok('DELETE', '/v1/price-overrides/default');
    await ok('PUT', '/v1/pipelines/pr-b', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: 'claude-haiku-4-5' }] }] });
    await ok('POST', '/v1/outcomes', { decisionId: d.decisionId, quality: 0.5, usage: { a: { inputTokens: 1000, outputTokens: 100 } } });
    const s = await statsAfter('pr-b-uni', 1);
    assert.equal(s.count, 1);
    assert.equal(s.cost.n, 0, `unpriced, not priced as haiku: ${JSON.stringify(s.cost)}`);
  });
});

describe('a cost ceiling at the cost of the minimums', () => {
  it('a ceiling alone, exactly the cost of the minimums, is served at the minimums (not INFEASIBLE_TOTAL)', async () => {
    const HAIKU = { inputPerMTokUsd: 1, outputPerMTokUsd: 5 };
    let x = 5;
    const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let short = 0;
    for (let i = 0; i < 30; i++) {
      const mins = Array.from({ length: 2 + Math.floor(rnd() * 4) }, () => 1 + Math.floor(rnd() * 5000));
      const agents = mins.map((m, j) => ({ name: `a${j}`, minTokens: m, models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }] }));
      await ok('PUT', `/v1/pipelines/pr-min-${i}`, { defaultTotalTokens: 40_000, agents });
      const ceiling = mins.reduce((s, m) => s + m * blendedRate(HAIKU), 0);
      // What the ceiling buys at the cheapest rate, in floating point: some fall a token short of the minimums.
      if (Math.floor(ceiling / blendedRate(HAIKU)) < mins.reduce((s, m) => s + m, 0)) short++;
      const r = await call('POST', '/v1/allocations', { pipeline: `pr-min-${i}`, maxCostUsd: ceiling });
      assert.equal(r.statusCode, 200, `${ceiling}: ${r.body}`);
      const a = r.json();
      mins.forEach((m, j) => assert.deepEqual(a.budgets[`a${j}`], { tokens: m, model: 'claude-haiku-4-5' }));
      const below = await call('POST', '/v1/allocations', { pipeline: `pr-min-${i}`, maxCostUsd: ceiling * (1 - 1e-6) });
      assert.equal(below.statusCode, 400);
      assert.equal(below.json().code, 'INFEASIBLE_COST');
      assert.match(below.json().message, /^body\/maxCostUsd/);
    }
    assert.ok(short > 0, 'some ceilings bought a token less than the minimums in floating point');
  });

  it('the ceiling tolerance is relative: a fraction of a cent is not overspent by an absolute allowance', () => {
    for (const c of [1e-7, 1e-5, 0.003, 0.5, 1, 40, 12_345]) {
      assert.ok(withinCeiling(c, c) && withinCeiling(c * (1 + 1e-12), c), `${c}: floating-point hairs are within`);
      assert.ok(!withinCeiling(c * (1 + 1e-7), c), `${c}: a ten-millionth above is not`);
    }
  });
});

describe('model names that are object keys', () => {
  it('a model named `__proto__` has its own per-model statistics', async () => {
    await ok('PUT', '/v1/price-overrides/default', { models: [{ model: '__proto__', inputMTok: 0.5, outputMTok: 1 }, { model: 'constructor', inputMTok: 0.4, outputMTok: 1 }] });
    await ok('PUT', '/v1/pipelines/pr-proto', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: '__proto__' }, { model: 'claude-haiku-4-5' }] }, { name: 'b', models: [{ model: 'constructor' }] }] });
    await ok('PUT', '/v1/strategies/pr-proto-uni', { pipeline: 'pr-proto', kind: 'uniform' });
    const d = await ok('POST', '/v1/allocations', { pipeline: 'pr-proto', strategy: 'pr-proto-uni' });
    assert.equal(d.budgets.a.model, '__proto__');
    await ok('POST', '/v1/outcomes', { decisionId: d.decisionId, quality: 0.5, usage: { a: { inputTokens: 1000, outputTokens: 100 }, b: { inputTokens: 10, outputTokens: 1 } } });
    const s = await statsAfter('pr-proto-uni', 1);
    assert.deepEqual(Object.keys(s.models.a), ['__proto__']);
    assert.equal(s.models.a.__proto__.n, 1);
    assert.equal(s.models.a.__proto__.meanConsumed, 1100);
    assert.equal(s.models.b.constructor.n, 1);
    await ok('DELETE', '/v1/price-overrides/default');
  });
});

describe('model ids on pipelines with models', () => {
  it('a routed model id (`openai/gpt-4o`) is priced as the cost reports price it: its provider’s list price', async () => {
    const p = await ok('PUT', '/v1/pipelines/pr-routed', {
      defaultTotalTokens: 10_000,
      agents: [{ name: 'a', models: [{ model: 'openai/gpt-4o' }, { model: 'anthropic/claude-haiku-4-5' }, { model: 'gpt-4o-mini', provider: 'openai' }] }],
    });
    assert.deepEqual(p.agents[0].models.map((m: any) => [m.model, m.price]), [
      ['openai/gpt-4o', { inputPerMTokUsd: 2.5, outputPerMTokUsd: 10 }],
      ['anthropic/claude-haiku-4-5', { inputPerMTokUsd: 1, outputPerMTokUsd: 5 }],
      ['gpt-4o-mini', { inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }],
    ]);
    const a = await ok('POST', '/v1/allocations', { pipeline: 'pr-routed' });
    assert.equal(a.budgets.a.model, 'openai/gpt-4o');
    // A routed id neither the table nor its provider prices is still refused.
    const r = await call('PUT', '/v1/pipelines/pr-routed-x', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: 'openai/no-such-model' }] }] });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'UNKNOWN_MODEL');
    assert.match(r.json().message, /^body\/agents\/0\/models\/0\/model/);
  });

  it('refuses a model id with leading or trailing whitespace, naming the field', async () => {
    for (const [agents, field] of [
      [[{ name: 'a', models: [{ model: 'claude-haiku-4-5' }, { model: 'gpt-4o ' }] }], 'body/agents/0/models/1/model'],
      [[{ name: 'a' }, { name: 'b', models: [{ model: ' claude-haiku-4-5' }] }], 'body/agents/1/models/0/model'],
      [[{ name: 'a', model: 'gpt-4o\t' }], 'body/agents/0/model'],
    ] as const) {
      const r = await call('PUT', '/v1/pipelines/pr-space', { defaultTotalTokens: 10_000, agents });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'VALIDATION_FAILED');
      assert.ok(r.json().message.startsWith(field), r.json().message);
    }
  });
});

describe('cost reports by model', () => {
  it('case variants of one model id are one row (matched case-insensitively, as the price table does), keyed in lower case', async () => {
    const span = (id: string, model: string) => ({ traceId: 'pr-case', spanId: id, sessionId: 'pr-case', agent: 'a', model, provider: 'openai', usage: { input: 1000, output: 100 }, start: '2025-06-21T11:00:00Z', end: '2025-06-21T11:00:01Z' });
    const r = await call('POST', '/v1/spans', { spans: [span('1', 'GPT-4o'), span('2', 'gpt-4o'), span('3', 'Gpt-4O'), span('4', 'gpt-4o-mini')] });
    assert.equal(r.statusCode, 200, r.body);
    const report = await eventually(async () => {
      const x = await ok('GET', '/v1/reports/costs?groupBy=model&from=2025-06-21&to=2025-06-21');
      return x.rows.reduce((s: number, row: any) => s + row.calls, 0) >= 4 ? x : undefined;
    });
    assert.deepEqual(report.rows.map((row: any) => [row.key, row.calls]), [['gpt-4o', 3], ['gpt-4o-mini', 1]]);
    const one = (3 * (1000 * 2.5 + 100 * 10)) / 1e6;
    assert.ok(Math.abs(report.rows[0].costUsd - one) < 1e-9, JSON.stringify(report.rows[0]));
  });
});
