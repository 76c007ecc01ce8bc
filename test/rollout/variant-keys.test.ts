import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newDecisionId } from '../../src/allocation/decisions.js';
import { isApplied } from '../../src/feedback/processor.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { client, drive, unitKeys } from './helpers.js';

// An arm's keys are its variant's name followed by a fixed suffix (`…:<variant>:agents`, `:obs`, `:buckets`), and
// variant names may contain ':'. Two variants whose names differ by such a suffix would share a key.
const prefix = testPrefix('variant-keys');
let rt: Running;
const api = client(() => rt);

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await api.ok('PUT', '/v1/pipelines/vk', FIVE_AGENTS);
  await api.ok('PUT', '/v1/strategies/vk-even', { pipeline: 'vk', kind: 'uniform' });
  await api.ok('PUT', '/v1/strategies/vk-lean', { pipeline: 'vk', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 3, validator: 1, formatter: 1 } } });
  await api.ok('PUT', '/v1/pipelines/vk', { ...FIVE_AGENTS, defaultStrategy: 'vk-even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const twoArms = (a: string, b: string) => ({
  pipeline: 'vk',
  variants: [
    { name: a, strategy: 'vk-even', weight: 1 },
    { name: b, strategy: 'vk-lean', weight: 1 },
  ],
});

describe('variant names and the keys of their arms', () => {
  it('refuses a variant named after another one followed by an arm key suffix (400 naming the field), and writes nothing', async () => {
    for (const suffix of ['agents', 'obs', 'buckets']) {
      for (const [a, b, at] of [
        ['x', `x:${suffix}`, 1],
        [`x:${suffix}`, 'x', 0],
      ] as const) {
        const r = await api.call('PUT', '/v1/experiments/vk-clash', twoArms(a, b));
        assert.equal(r.statusCode, 400, `${a} + ${b}: ${r.body}`);
        assert.equal(r.json().code, 'INVALID_EXPERIMENT');
        assert.match(r.json().message, new RegExp(`^body/variants/${at}/name: `), r.body);
        assert.match(r.json().message, /share/);
      }
    }
    assert.equal((await api.call('GET', '/v1/experiments/vk-clash')).statusCode, 404);
  });

  it("keeps names with ':' that cannot clash, and counts each arm apart", async () => {
    // A name that is another one followed by an arm key's suffix is refused at any depth (`x:obs` + `:agents`); any
    // other name with ':' is kept (stored experiments use them).
    const refused = await api.call('PUT', '/v1/experiments/vk-deep', { pipeline: 'vk', variants: [{ name: 'x:obs', strategy: 'vk-even', weight: 1 }, { name: 'x:obs:agents', strategy: 'vk-lean', weight: 1 }] });
    assert.equal(refused.statusCode, 400, refused.body);
    await api.ok('PUT', '/v1/experiments/vk-colon', twoArms('x', 'x:agents2'));
    await api.ok('POST', '/v1/experiments/vk-colon/start');
    const driven = await drive(api, {
      pipeline: 'vk',
      experiment: 'vk-colon',
      units: unitKeys(60, 'vk-colon'),
      outcome: (a) => ({
        quality: a.variant === 'x' ? 1 : 0,
        costUsd: a.variant === 'x' ? 0.01 : 0.03,
        usage: Object.fromEntries(Object.entries(a.budgets as Record<string, { tokens: number }>).map(([agent, b]) => [agent, { inputTokens: Math.floor(b.tokens / 2), outputTokens: 0 }])),
      }),
    });
    const res = await api.ok('GET', '/v1/experiments/vk-colon/results');
    const arms = new Map<string, { n: number; quality: { mean: number } }>(res.phases[0].variants.map((v: { variant: string }) => [v.variant, v]));
    for (const name of ['x', 'x:agents2']) assert.equal(arms.get(name)!.n, driven.byVariant.get(name) ?? 0, name);
    assert.equal(arms.get('x')!.quality.mean, 1);
    assert.equal(arms.get('x:agents2')!.quality.mean, 0);
  });

  it('an SDK record cannot name another arm\'s or strategy\'s keys: a strategy that is no id is refused, a variant its experiment lacks counts nowhere', async () => {
    const exp = await api.ok('GET', '/v1/experiments/vk-colon');
    const budgets = { orchestrator: 2000, retriever: 2000, reasoner: 2000, validator: 2000, formatter: 2000 };
    const record = (over: Record<string, unknown>) => ({
      id: newDecisionId(), ts: Date.now(), pipeline: 'vk', pipelineVersion: 2, strategy: 'vk-even', strategyVersion: 1, strategyKind: 'uniform',
      reason: 'experiment', features: {}, totalTokens: 10_000, budgets, ...over,
    });
    const forgedStrategy = record({ strategy: 'vk-even:agents', reason: 'requested' });
    const badRoute = record({ route: { experiment: 'vk-colon:x', generation: exp.generation, phase: 0, variant: 'x' } });
    const forgedVariant = record({ unitKey: 'sdk-1', route: { experiment: 'vk-colon', generation: exp.generation, phase: 0, variant: 'x:agents' } });
    const r = await api.ok('POST', '/v1/decisions/batch', { decisions: [forgedStrategy, badRoute, forgedVariant] });
    assert.equal(r.accepted, 1, JSON.stringify(r));
    assert.deepEqual(r.rejected.map((x: { index: number; code: string }) => [x.index, x.code]), [[0, 'VALIDATION_FAILED'], [1, 'VALIDATION_FAILED']]);
    assert.match(r.rejected[0].message, /^body\/decisions\/0\/strategy: /);
    assert.match(r.rejected[1].message, /^body\/decisions\/1\/route\/experiment: /);
    const before = await api.ok('GET', '/v1/experiments/vk-colon/results');
    await api.ok('POST', '/v1/outcomes', { decisionId: forgedVariant.id, quality: 0.25, usage: { reasoner: { inputTokens: 1000 } } });
    await eventually(() => isApplied(rt.core.redis, rt.core.keys, 'vk', forgedVariant.id));
    const after = await api.ok('GET', '/v1/experiments/vk-colon/results');
    assert.deepEqual(after.phases[0].variants, before.phases[0].variants, 'no arm of the experiment moved');
  });
});
