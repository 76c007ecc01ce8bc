import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { LearnerModule } from '../../src/learner/module.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * Propensities of experiment-routed decisions through the service (real Redis and BullMQ): an A/B experiment at
 * 60 % coverage with weights 1 : 3 routes a unit to `heavy` with probability 0.6 × 0.75 = 0.45 and to the
 * pipeline default `even` with 0.6 × 0.25 + 0.4 = 0.55. Each decision must log exactly that, the router's
 * actual assignment must match it, and off-policy evaluation of the variant must recover its known value.
 */
const prefix = testPrefix('learner-propensity');
let rt: Running;
let learner: LearnerModule;
const HEAVY = { orchestrator: 1, retriever: 1, reasoner: 4, validator: 1, formatter: 1 };
/** Known truth: the heavy split earns 0.8, the even split 0.5. */
const quality = (strategy: string) => (strategy === 'ab-heavy' ? 0.8 : 0.5);

const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
async function ok(method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown): Promise<any> {
  const r = await call(method, url, payload);
  assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
  return r.json();
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
  await ok('PUT', '/v1/pipelines/ab', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/ab-even', { pipeline: 'ab', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/ab-heavy', { pipeline: 'ab', kind: 'static', params: { shares: HEAVY } });
  await ok('PUT', '/v1/strategies/ab-odd', { pipeline: 'ab', kind: 'static', params: { shares: { orchestrator: 8, retriever: 1, reasoner: 1, validator: 1, formatter: 1 } } });
  await ok('PUT', '/v1/pipelines/ab', { ...FIVE_AGENTS, defaultStrategy: 'ab-even' });
  // A feature declaration makes the pipeline's outcomes logged for evaluation.
  await ok('PUT', '/v1/pipelines/ab/features', { features: [{ name: 'tier', type: 'categorical', values: ['free', 'pro'] }] });
  await ok('PUT', '/v1/experiments/ab-test', {
    pipeline: 'ab',
    coverage: 0.6,
    variants: [
      { name: 'control', strategy: 'ab-even', weight: 1 },
      { name: 'heavy', strategy: 'ab-heavy', weight: 3 },
    ],
    control: 'control',
  });
  await ok('POST', '/v1/experiments/ab-test/start');
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('propensities of experiment-routed decisions', () => {
  const n = 800;
  const served = new Map<string, number>();

  it('log the variant probability (weight × coverage; the default gets the rest), matching the router’s assignment', async () => {
    for (let i = 0; i < n; i++) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'ab', unitKey: `unit-${i}`, features: { tier: i % 2 ? 'pro' : 'free' } });
      served.set(a.strategy, (served.get(a.strategy) ?? 0) + 1);
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, a.decisionId))!) as DecisionRecord;
      const expected = a.strategy === 'ab-heavy' ? 0.45 : 0.55;
      assert.ok(d.routing && Math.abs(d.routing.q - expected) < 1e-12, JSON.stringify(d.routing));
      assert.deepEqual(d.routing.alt.map((x) => x.s), [a.strategy === 'ab-heavy' ? 'ab-even' : 'ab-heavy']);
      assert.ok(Math.abs(d.routing.alt[0]!.q - (1 - expected)) < 1e-12);
      const o = await call('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: quality(a.strategy) });
      assert.equal(o.statusCode, 202, o.body);
    }
    // The router's assignment frequency agrees with the logged probability (within 5 binomial sd).
    const share = (served.get('ab-heavy') ?? 0) / n;
    assert.ok(Math.abs(share - 0.45) < 5 * Math.sqrt((0.45 * 0.55) / n), `heavy served ${share}`);
    // A request without a unit key is not routed at random: no routing stage logged.
    const plain = await ok('POST', '/v1/allocations', { pipeline: 'ab' });
    assert.equal((JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, plain.decisionId))!) as DecisionRecord).routing, undefined);
  });

  it('reach the logged events, and off-policy evaluation of a variant recovers its known value', async () => {
    await eventually(async () => {
      await learner.training.ingest('ab');
      return (await learner.training.events('ab', 5000)).length >= n;
    }, 60_000, 200);
    const events = await learner.training.events('ab', 5000);
    for (const e of events) {
      const p = e.P![e.k!]!;
      assert.ok(Math.abs(p - (e.s === 'ab-heavy' ? 0.45 : 0.55)) < 1e-12, `${e.s}: ${p}`);
    }
    const heavy = await ok('GET', '/v1/pipelines/ab/ope?strategy=ab-heavy&resamples=400');
    assert.equal(heavy.support, 1);
    assert.equal(heavy.reason, null);
    assert.ok(heavy.ips.lo <= 0.8 && 0.8 <= heavy.ips.hi, `IPS ${JSON.stringify(heavy.ips)} vs truth 0.8`);
    assert.ok(Math.abs(heavy.snips.value - 0.8) < 1e-9, 'rewards are constant per action: SNIPS is exact');
    const even = await ok('GET', '/v1/pipelines/ab/ope?strategy=ab-even&resamples=400');
    assert.ok(even.ips.lo <= 0.5 && 0.5 <= even.ips.hi, `IPS ${JSON.stringify(even.ips)} vs truth 0.5`);
  });

  it('reports an estimate without support as null with a reason', async () => {
    const odd = await ok('GET', '/v1/pipelines/ab/ope?strategy=ab-odd');
    assert.deepEqual([odd.ips, odd.snips, odd.dr, odd.support, odd.matched], [null, null, null, 0, 0]);
    assert.match(odd.reason, /no support/);
  });
});
