import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { blendedRate } from '@apportion/sdk/engine';
import { readDecision } from '../../src/allocation/decisions.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/**
 * Model tiers over the API: pipelines declare candidate models per agent (priced from the price table or a tenant
 * override, an unknown model refused), requests carry a cost ceiling, every answer names a model per agent, the
 * decision record keeps it, and outcome statistics are kept per agent and served model.
 */
const prefix = testPrefix('tiers-api');
let rt: Running;

async function call(method: string, url: string, payload?: unknown): Promise<LightMyRequestResponse> {
  return rt.app!.inject({ method: method as 'GET', url, ...(payload !== undefined ? { payload: payload as object } : {}) });
}
async function ok(method: string, url: string, payload?: unknown): Promise<Record<string, any>> {
  const r = await call(method, url, payload);
  assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
  return r.body ? (r.json() as Record<string, any>) : {};
}

const OPUS = { inputPerMTokUsd: 15, outputPerMTokUsd: 75 };
const HAIKU = { inputPerMTokUsd: 1, outputPerMTokUsd: 5 };

const tiered = {
  defaultTotalTokens: 30_000,
  agents: [
    { name: 'planner', priority: 'critical', minTokens: 500, models: [{ model: 'claude-opus-4-1', provider: 'anthropic' }, { model: 'claude-haiku-4-5' }] },
    { name: 'writer', minTokens: 500, models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }] },
    { name: 'formatter', priority: 'background', minTokens: 200, models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }] },
  ],
};

before(async () => {
  rt = await startTest(prefix, { workers: true });
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('pipelines with candidate models', () => {
  it('prices every model from the price table and answers the prices with the pipeline', async () => {
    const p = await ok('PUT', '/v1/pipelines/tiers-a', tiered);
    assert.deepEqual(p.agents[0].models, [
      { model: 'claude-opus-4-1', provider: 'anthropic', price: OPUS },
      { model: 'claude-haiku-4-5', price: HAIKU },
    ]);
    const again = await ok('GET', '/v1/pipelines/tiers-a');
    assert.deepEqual(again.agents, p.agents);
  });

  it('refuses a model the price table does not know, naming the field, unless the tenant has an override', async () => {
    const body = { defaultTotalTokens: 1000, agents: [{ name: 'a', models: [{ model: 'claude-haiku-4-5' }, { model: 'in-house-7b' }] }] };
    const r = await call('PUT', '/v1/pipelines/tiers-unknown', body);
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'UNKNOWN_MODEL');
    assert.match(r.json().message, /^body\/agents\/0\/models\/1\/model: "in-house-7b"/);
    const wrongProvider = await call('PUT', '/v1/pipelines/tiers-unknown', { defaultTotalTokens: 1000, agents: [{ name: 'a', models: [{ model: 'claude-haiku-4-5', provider: 'openai' }] }] });
    assert.equal(wrongProvider.json().code, 'UNKNOWN_MODEL');
    const dup = await call('PUT', '/v1/pipelines/tiers-unknown', { defaultTotalTokens: 1000, agents: [{ name: 'a', models: [{ model: 'claude-haiku-4-5' }, { model: 'claude-haiku-4-5' }] }] });
    assert.equal(dup.statusCode, 400);
    assert.equal(dup.json().code, 'DUPLICATE_MODEL');
    // A model is named by its name alone in answers and decisions: the same name with and without a provider, or in
    // another case, is the same model twice.
    for (const twice of [
      [{ model: 'claude-haiku-4-5' }, { model: 'claude-haiku-4-5', provider: 'anthropic' }],
      [{ model: 'claude-haiku-4-5', provider: 'anthropic' }, { model: 'CLAUDE-HAIKU-4-5' }],
    ]) {
      const r = await call('PUT', '/v1/pipelines/tiers-unknown', { defaultTotalTokens: 1000, agents: [{ name: 'a', models: twice }] });
      assert.equal(r.statusCode, 400, JSON.stringify(twice));
      assert.equal(r.json().code, 'DUPLICATE_MODEL');
      assert.match(r.json().message, /^body\/agents\/0\/models\/1\/model/);
    }
    const mismatch = await call('PUT', '/v1/pipelines/tiers-unknown', { defaultTotalTokens: 1000, agents: [{ name: 'a', model: 'gpt-4o', models: [{ model: 'claude-haiku-4-5' }] }] });
    assert.equal(mismatch.json().code, 'UNKNOWN_MODEL');
    assert.match(mismatch.json().message, /^body\/agents\/0\/model/);
    const priced = await call('PUT', '/v1/pipelines/tiers-unknown', { ...body, agents: [{ ...body.agents[0], price: { inputPerMTokUsd: 1, outputPerMTokUsd: 1 } }] });
    assert.equal(priced.json().code, 'UNKNOWN_MODEL', "an agent's own price does not price an unknown candidate model");

    await ok('PUT', '/v1/price-overrides/default', { models: [{ model: 'in-house-7b', inputMTok: 0.05, outputMTok: 0.1 }] });
    const p = await ok('PUT', '/v1/pipelines/tiers-unknown', body);
    assert.deepEqual(p.agents[0].models[1], { model: 'in-house-7b', price: { inputPerMTokUsd: 0.05, outputPerMTokUsd: 0.1 } });
    await ok('DELETE', '/v1/price-overrides/default');
  });

  it('a pipeline without models answers exactly as before: no model, no cost', async () => {
    await ok('PUT', '/v1/pipelines/tiers-plain', { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b', model: 'gpt-4o' }] });
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-plain' });
    assert.deepEqual(a.budgets, { a: { tokens: 500 }, b: { tokens: 500 } });
    assert.equal(a.costUsd, undefined);
    assert.equal(a.maxCostUsd, undefined);
  });
});

describe('allocations on model tiers', () => {
  it('the built-in strategies serve every agent its first model; the record keeps the models', async () => {
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a' });
    assert.deepEqual(Object.fromEntries(Object.entries(a.budgets).map(([k, v]: [string, any]) => [k, v.model])), { planner: 'claude-opus-4-1', writer: 'claude-opus-4-1', formatter: 'claude-opus-4-1' });
    assert.deepEqual(a.budgets.planner, { tokens: 10_000, model: 'claude-opus-4-1' });
    assert.equal(a.costUsd, Number((30_000 * blendedRate(OPUS)).toFixed(9)));
    const rec = await readDecision(rt.core.redis, rt.core.keys, a.decisionId);
    assert.ok(rec);
    assert.deepEqual(rec.models, { planner: 'claude-opus-4-1', writer: 'claude-opus-4-1', formatter: 'claude-opus-4-1' });
  });

  it('a cost ceiling with a token total trims every budget above its minimum by one factor; the reserve is dropped when it cannot be paid', async () => {
    const ceiling = 0.2;
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', totalTokens: 30_000, maxCostUsd: ceiling });
    const tokens = Object.values(a.budgets).map((b: any) => b.tokens as number);
    const cost = tokens.reduce((s, t) => s + t * blendedRate(OPUS), 0);
    assert.ok(cost <= ceiling, `planned ${cost} within ${ceiling}`);
    assert.ok(cost > ceiling * 0.999, `the ceiling is used: ${cost}`);
    assert.equal(a.maxCostUsd, ceiling);
    assert.ok(a.costUsd <= ceiling);
    // One factor above the minimums: (b − min) stays proportional.
    const above = [tokens[0]! - 500, tokens[1]! - 500, tokens[2]! - 200];
    assert.ok(Math.abs(above[0]! - above[1]!) <= 1 && above[2]! - above[0]! <= 300 + 1 && above[0]! > 0, JSON.stringify(tokens));
    assert.equal(a.totalTokens, tokens.reduce((s, t) => s + t, 0) + a.unallocatedTokens);
    const rec = await readDecision(rt.core.redis, rt.core.keys, a.decisionId);
    assert.equal(rec?.maxCostUsd, ceiling);
    // A ceiling the request's total never reaches changes nothing.
    const loose = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', totalTokens: 30_000, maxCostUsd: 100 });
    assert.equal(loose.budgets.planner.tokens, 10_000);
    assert.equal(loose.totalTokens, 30_000);
  });

  it("a ceiling exactly the cost of the minimums on the cheapest models is served (generated pipelines); a hair below is refused", async () => {
    let x = 17;
    const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let boundary = 0;
    for (let i = 0; i < 40; i++) {
      const n = 2 + Math.floor(rnd() * 4);
      const agents = Array.from({ length: n }, (_, j) => ({ name: `a${j}`, minTokens: 1 + Math.floor(rnd() * 5000), models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }] }));
      await ok('PUT', `/v1/pipelines/tiers-edge-${i}`, { defaultTotalTokens: 40_000, agents });
      const minCost = agents.reduce((s, a) => s + a.minTokens * blendedRate(HAIKU), 0);
      // The ceiling as a user writes it: the decimal the sum should be, which floating point may sum a hair above.
      const ceiling = Number(minCost.toPrecision(12));
      if (ceiling < minCost) boundary++;
      const r = await call('POST', '/v1/allocations', { pipeline: `tiers-edge-${i}`, totalTokens: 40_000, maxCostUsd: ceiling });
      assert.equal(r.statusCode, 200, `${ceiling} (sum ${minCost}): ${r.body}`);
      const a = r.json();
      for (const ag of agents) assert.deepEqual(a.budgets[ag.name], { tokens: ag.minTokens, model: 'claude-haiku-4-5' });
      assert.ok(a.costUsd <= ceiling, `${a.costUsd} within ${ceiling}`);
      const below = await call('POST', '/v1/allocations', { pipeline: `tiers-edge-${i}`, totalTokens: 40_000, maxCostUsd: ceiling * (1 - 1e-6) });
      assert.equal(below.json().code, 'INFEASIBLE_COST');
    }
    assert.ok(boundary > 0, 'some ceilings were below their floating-point sum');
  });

  it('an agent without `models` names no model, even with a `model` label, on a pipeline whose other agents have models', async () => {
    await ok('PUT', '/v1/pipelines/tiers-mixed', { defaultTotalTokens: 10_000, agents: [{ name: 'a', models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }] }, { name: 'b', model: 'in-house', price: HAIKU }] });
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-mixed', maxCostUsd: 0.05 });
    assert.equal(a.budgets.a.model, 'claude-opus-4-1');
    assert.deepEqual(Object.keys(a.budgets.b), ['tokens']);
    assert.ok(a.costUsd > 0, 'b is priced by its own price all the same');
  });

  it('a cost ceiling instead of a token total: the total is what the ceiling buys at the cheapest price, the split is paid for', async () => {
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', maxCostUsd: 0.5 });
    const tokens = Object.values(a.budgets).map((b: any) => b.tokens as number);
    const cost = tokens.reduce((s, t) => s + t * blendedRate(OPUS), 0);
    assert.ok(cost <= 0.5 && cost > 0.499, String(cost));
    const r = await call('POST', '/v1/allocations', { pipeline: 'tiers-a', maxCostUsd: 0.0001 });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'INFEASIBLE_COST');
    assert.match(r.json().message, /^body\/maxCostUsd/);
    const unpriced = await call('POST', '/v1/allocations', { pipeline: 'tiers-plain', maxCostUsd: 1 });
    assert.equal(unpriced.statusCode, 400);
    assert.equal(unpriced.json().code, 'UNPRICED_AGENT');
    const bad = await call('POST', '/v1/allocations', { pipeline: 'tiers-a', maxCostUsd: -1 });
    assert.equal(bad.statusCode, 400);
  });

  it('priority-pool routes a background agent to its cheapest model when the pool is short for it, or the ceiling binds', async () => {
    await ok('PUT', '/v1/strategies/tiers-pool', { pipeline: 'tiers-a', kind: 'priority-pool', params: { needs: { planner: 12_000, writer: 12_000, formatter: 12_000 } } });
    const roomy = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', strategy: 'tiers-pool', totalTokens: 40_000 });
    assert.equal(roomy.budgets.formatter.model, 'claude-opus-4-1', 'enough pool: the first model');
    const short = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', strategy: 'tiers-pool', totalTokens: 30_000 });
    assert.deepEqual(
      Object.fromEntries(Object.entries(short.budgets).map(([k, v]: [string, any]) => [k, v.model])),
      { planner: 'claude-opus-4-1', writer: 'claude-opus-4-1', formatter: 'claude-haiku-4-5' },
      'a short pool sends only the background agent to its cheapest model',
    );
    const capped = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', strategy: 'tiers-pool', totalTokens: 40_000, maxCostUsd: 0.5 });
    assert.equal(capped.budgets.formatter.model, 'claude-haiku-4-5', 'a binding ceiling does too');
    assert.equal(capped.budgets.planner.model, 'claude-opus-4-1');
    const cost = capped.budgets.planner.tokens * blendedRate(OPUS) + capped.budgets.writer.tokens * blendedRate(OPUS) + capped.budgets.formatter.tokens * blendedRate(HAIKU);
    assert.ok(cost <= 0.5, String(cost));
    assert.equal(capped.costUsd, Math.round(cost * 1e9) / 1e9);
  });

  it('outcome statistics are kept per agent and per agent and served model; cost from usage uses the served model', async () => {
    const a = await ok('POST', '/v1/allocations', { pipeline: 'tiers-a', strategy: 'tiers-pool', totalTokens: 30_000 });
    await ok('POST', '/v1/outcomes', {
      decisionId: a.decisionId,
      quality: 0.8,
      usage: { planner: { inputTokens: 700, outputTokens: 300 }, formatter: { inputTokens: 1400, outputTokens: 600 } },
    });
    const stats = await eventually(async () => {
      const s = await ok('GET', '/v1/strategies/tiers-pool/stats');
      return s.count >= 1 ? s : undefined;
    });
    assert.deepEqual(Object.keys(stats.agents).sort(), ['formatter', 'planner']);
    assert.deepEqual(Object.keys(stats.models), ['formatter', 'planner']);
    assert.equal(stats.models.formatter['claude-haiku-4-5'].n, 1);
    assert.equal(stats.models.planner['claude-opus-4-1'].meanConsumed, 1000);
    const expected = (700 * 15 + 300 * 75 + 1400 * 1 + 600 * 5) / 1e6;
    assert.ok(Math.abs(stats.cost.mean - expected) < 1e-9, `cost ${stats.cost.mean} priced on the served models (${expected})`);
  });
});
