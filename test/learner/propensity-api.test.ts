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

describe('propensities with a holdout, a layer and an unlayered experiment', () => {
  /**
   * Holdout 20 %; e1 in layer L [0, 0.5) at 80 % (a 1 : b 1); e2 in layer L [0.5, 1) at 60 % (even 1 : c 1);
   * e3 without a layer at 50 % (a 1 : c 3); default even. By src/rollout/propensity.ts:
   *   e1 0.8 × 0.5 × 0.8 = 0.32, e2 0.8 × 0.5 × 0.6 = 0.24, e3 0.8 × 0.5 × (1 − 0.4 − 0.3) = 0.12,
   *   default 0.8 × 0.3 × 0.5 = 0.12, so even 0.2 + 0.12 + 0.12 = 0.44, a 0.16 + 0.03 = 0.19, b 0.16,
   *   c 0.12 + 0.09 = 0.21. The router's assignment of 2,000 units must agree.
   */
  const expected: Record<string, number> = { 'l-even': 0.44, 'l-a': 0.19, 'l-b': 0.16, 'l-c': 0.21 };

  /**
   * `n` units allocated on pipeline `lay`: every decision logs exactly the `expected` probability per strategy, and
   * the served shares agree with them (within 5 standard errors).
   */
  async function routesAsLogged(expectedQ: Record<string, number>, n: number): Promise<void> {
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'lay', unitKey: `u-${i}` });
      counts.set(a.strategy, (counts.get(a.strategy) ?? 0) + 1);
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, a.decisionId))!) as DecisionRecord;
      assert.ok(d.routing, 'random routing is logged');
      const logged = new Map([[a.strategy as string, d.routing.q], ...d.routing.alt.map((x) => [x.s, x.q] as const)]);
      for (const [s, q] of Object.entries(expectedQ)) assert.ok(Math.abs((logged.get(s) ?? 0) - q) < 1e-9, `${s}: logged ${logged.get(s)}, expected ${q}`);
    }
    for (const [s, q] of Object.entries(expectedQ)) {
      const share = (counts.get(s) ?? 0) / n;
      assert.ok(Math.abs(share - q) < 5 * Math.sqrt((q * (1 - q)) / n), `${s} served ${share}, logged probability ${q}`);
    }
  }

  it('logs the probabilities the router actually assigns with', async () => {
    await ok('PUT', '/v1/pipelines/lay', FIVE_AGENTS);
    for (const [id, reasoner] of [['l-even', 1], ['l-a', 2], ['l-b', 3], ['l-c', 5]] as const) {
      await ok('PUT', `/v1/strategies/${id}`, { pipeline: 'lay', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner, validator: 1, formatter: 1 } } });
    }
    await ok('PUT', '/v1/pipelines/lay', { ...FIVE_AGENTS, defaultStrategy: 'l-even' });
    const v = (a: string, b: string, wa: number, wb: number) => [
      { name: 'x', strategy: a, weight: wa },
      { name: 'y', strategy: b, weight: wb },
    ];
    await ok('PUT', '/v1/experiments/l-hold', { pipeline: 'lay', type: 'holdout', coverage: 0.2 });
    await ok('PUT', '/v1/experiments/l-e1', { pipeline: 'lay', coverage: 0.8, layer: { id: 'L', range: [0, 0.5] }, variants: v('l-a', 'l-b', 1, 1), control: 'x' });
    await ok('PUT', '/v1/experiments/l-e2', { pipeline: 'lay', coverage: 0.6, layer: { id: 'L', range: [0.5, 1] }, variants: v('l-even', 'l-c', 1, 1), control: 'x' });
    await ok('PUT', '/v1/experiments/l-e3', { pipeline: 'lay', coverage: 0.5, variants: v('l-a', 'l-c', 1, 3), control: 'x' });
    for (const e of ['l-hold', 'l-e1', 'l-e2', 'l-e3']) await ok('POST', `/v1/experiments/${e}/start`);
    await routesAsLogged(expected, 2000);
  });

  it("names the holdout's frozen strategy for the held-out share once the pipeline default has moved on", async () => {
    // The default becomes l-c; the holdout keeps serving its held-out units l-even (what it froze at its start):
    //   l-even 0.2 (held out) + 0.12 (e2) = 0.32, l-c 0.21 + 0.12 (the default's share) = 0.33, l-a 0.19, l-b 0.16.
    await ok('PUT', '/v1/pipelines/lay', { ...FIVE_AGENTS, defaultStrategy: 'l-c' });
    await routesAsLogged({ 'l-even': 0.32, 'l-a': 0.19, 'l-b': 0.16, 'l-c': 0.33 }, 1000);
  });
});
