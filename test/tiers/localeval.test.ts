import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import { newDecisionId, readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { learnsTiers, MAX_JOINT_ASSIGNMENTS } from '@apportion/sdk/engine';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { okHttp } from '../helpers/http.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * Model tiers in the SDK's local mode: on a pipeline with candidate models, under random token totals and cost
 * ceilings, every built-in strategy kind and an experiment, the SDK answers exactly as the server (models,
 * budgets trimmed to the ceiling, reserve, planned cost).
 */
const prefix = testPrefix('tiers-localeval');
let rt: Running;
let url: string;

const op = okHttp(() => url);

const PIPELINE = {
  defaultTotalTokens: 20_000,
  agents: [
    { name: 'planner', priority: 'critical', minTokens: 300, maxTokens: 12_000, models: [{ model: 'claude-opus-4-1' }, { model: 'claude-sonnet-4' }] },
    { name: 'coder', minTokens: 500, models: [{ model: 'claude-sonnet-4' }, { model: 'claude-haiku-4-5' }] },
    { name: 'formatter', priority: 'background', minTokens: 100, maxTokens: 8000, models: [{ model: 'claude-opus-4-1' }, { model: 'claude-haiku-4-5' }, { model: 'gpt-4o-mini' }] },
    { name: 'logger', priority: 'background', minTokens: 0, price: { inputPerMTokUsd: 0.1, outputPerMTokUsd: 0.2 } },
  ],
};

before(async () => {
  rt = await startTest(prefix, { listen: true, workers: false }, { PORT: '0' });
  url = rt.url!;
  await op('PUT', '/v1/pipelines/lt-tiers', PIPELINE);
  await op('PUT', '/v1/strategies/lt-static', { pipeline: 'lt-tiers', kind: 'static', params: { shares: { planner: 3, coder: 4, formatter: 2, logger: 1 } } });
  await op('PUT', '/v1/strategies/lt-pool', { pipeline: 'lt-tiers', kind: 'priority-pool', params: { needs: { planner: 6000, coder: 9000, formatter: 6000, logger: 2000 } } });
  await op('PUT', '/v1/strategies/lt-est', { pipeline: 'lt-tiers', kind: 'estimate', params: { agents: { coder: { base: 2000, per: { messageCount: 300 } } } } });
  await op('PUT', '/v1/pipelines/lt-tiers', { ...PIPELINE, defaultStrategy: 'lt-static' });
  await op('PUT', '/v1/experiments/lt-ab', {
    pipeline: 'lt-tiers',
    variants: [
      { name: 'control', strategy: 'lt-static', weight: 1 },
      { name: 'pool', strategy: 'lt-pool', weight: 1 },
      { name: 'est', strategy: 'lt-est', weight: 1 },
    ],
    control: 'control',
    coverage: 0.8,
  });
  await op('POST', '/v1/experiments/lt-ab/start');
});

after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('model tiers in local mode', () => {
  it('answers 2,000 seeded requests with models and cost ceilings exactly as the server does', async () => {
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 0, stream: false });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(19);
    const forced = ['lt-static', 'lt-pool', 'lt-est', '@uniform'];
    const seen = { models: new Set<string>(), trimmed: 0, ceilingOnly: 0 };
    for (let i = 0; i < 2000; i++) {
      const withTotal = rng() < 0.7;
      const withCeiling = rng() < 0.6 || !withTotal;
      const req = {
        pipeline: 'lt-tiers',
        unitKey: `u${Math.floor(rng() * 500)}`,
        features: { messageCount: Math.floor(rng() * 20) },
        ...(withTotal ? { totalTokens: 900 + Math.floor(rng() * 40_000) } : {}),
        ...(withCeiling ? { maxCostUsd: Math.round((0.01 + rng() * rng() * 1.5) * 1e4) / 1e4 } : {}),
        ...(rng() < 0.2 ? { strategy: forced[Math.floor(rng() * forced.length)]! } : {}),
        decisionId: newDecisionId(),
      };
      const res = await fetch(`${url}/v1/allocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
      const server = (await res.json()) as Record<string, any>;
      if (res.status !== 200) {
        // The same refusal locally (a ceiling below the minimums on the cheapest models).
        assert.equal(server.code, 'INFEASIBLE_COST', JSON.stringify(server));
        await assert.rejects(local.allocate(req), /maxCostUsd/);
        continue;
      }
      const { recorded: _r, ...mine } = (await local.allocate(req)) as unknown as Record<string, any>;
      const { recorded: _s, ...theirs } = server;
      assert.deepEqual(mine, theirs, `request ${JSON.stringify(req)}`);
      for (const b of Object.values(server.budgets) as { model?: string }[]) if (b.model) seen.models.add(b.model);
      assert.equal(server.budgets.logger.model, undefined, 'an agent without models names none');
      if (withCeiling) {
        assert.ok(server.costUsd <= req.maxCostUsd! + 1e-9, `${server.costUsd} within ${req.maxCostUsd}`);
        if (withTotal && server.totalTokens < req.totalTokens!) seen.trimmed++;
        if (!withTotal) seen.ceilingOnly++;
      }
    }
    assert.deepEqual([...seen.models].sort(), ['claude-haiku-4-5', 'claude-opus-4-1', 'claude-sonnet-4', 'gpt-4o-mini'], 'first models, and the cheapest ones (the pool, minimums under a tight ceiling)');
    assert.ok(seen.trimmed > 50 && seen.ceilingOnly > 50, JSON.stringify({ trimmed: seen.trimmed, ceilingOnly: seen.ceilingOnly }));
    await sdk.close();
  });

  it('serves the learned strategy on tokens only where the joint model space is too large, locally as on the server', async () => {
    // 7 agents with 2 candidate models each: 128 assignments, over MAX_JOINT_ASSIGNMENTS; 6 of them: 64, at it.
    const agent = (i: number) => ({ name: `a${i}`, minTokens: 100, models: [{ model: 'claude-sonnet-4' }, { model: 'claude-haiku-4-5' }] });
    const wide = { defaultTotalTokens: 14_000, agents: Array.from({ length: 7 }, (_, i) => agent(i)) };
    assert.equal(MAX_JOINT_ASSIGNMENTS, 64);
    assert.equal(learnsTiers({ ...wide, agents: wide.agents.slice(0, 6) } as never), true);
    assert.equal(learnsTiers(wide as never), false);
    await op('PUT', '/v1/pipelines/lt-wide', wide);
    await op('PUT', '/v1/strategies/lt-wide-learn', { pipeline: 'lt-wide', kind: 'learned' });
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 0, stream: false });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(23);
    for (let i = 0; i < 50; i++) {
      const req = { pipeline: 'lt-wide', strategy: 'lt-wide-learn', totalTokens: 2000 + Math.floor(rng() * 30_000), ...(i % 2 ? { maxCostUsd: 0.05 + rng() * 0.3 } : {}), decisionId: newDecisionId() };
      const res = await fetch(`${url}/v1/allocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
      const server = (await res.json()) as Record<string, any>;
      assert.equal(res.status, 200, JSON.stringify(server));
      // The token learner's record (a learned decision without a joint action set), and the tier stage's models.
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, server.decisionId))!) as DecisionRecord;
      const meta = d.meta?.learner as Record<string, unknown> | undefined;
      assert.ok(meta && Array.isArray(meta.g) && Array.isArray(meta.P), `a learned decision: ${JSON.stringify(d.meta)}`);
      assert.equal(meta.TC, undefined, 'no joint model-and-tokens action set');
      assert.equal(meta.TM, undefined);
      for (const b of Object.values(server.budgets) as { model?: string }[]) assert.ok(b.model === 'claude-sonnet-4' || b.model === 'claude-haiku-4-5');
      const { recorded: _r, ...mine } = (await local.allocate(req)) as unknown as Record<string, any>;
      const { recorded: _s, ...theirs } = server;
      assert.deepEqual(mine, theirs, `request ${JSON.stringify(req)}`);
    }
    await sdk.close();
  });
});
