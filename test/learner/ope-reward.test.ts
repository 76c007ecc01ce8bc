/**
 * Off-policy evaluation uses one reward for every target on the same logs: quality − λ·cost with the λ of the
 * pipeline's learned strategy (ope-service.ts pipelineCostWeight). Before, λ was subtracted for a learned target only,
 * so `logged` (the mean reward of the very same events) and every estimate moved with the target asked about.
 * A toy log with known truth: the quality of a split is a deterministic function of it and the cost is fixed per
 * decision, so the default static strategy's value is known exactly.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LearnerModule } from '../../src/learner/module.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('ope-reward');
const AGENTS = ['a', 'b', 'c'];
const TOTAL = 6000;
const LAMBDA = 2;
const COST = 0.05;
let rt: Running;

const inject = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });
/** Quality of a split: deterministic, so the static target's matched decisions all earn exactly its value. */
const quality = (b: readonly number[]) => 0.3 + 0.6 * (b[2]! / TOTAL);

before(async () => {
  rt = await startTest(prefix);
  assert.equal((await inject('PUT', '/v1/pipelines/p', { defaultTotalTokens: TOTAL, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
  assert.equal((await inject('PUT', '/v1/strategies/fixed', { pipeline: 'p', kind: 'static', params: { shares: { a: 1, b: 2, c: 3 } } })).statusCode, 200);
  assert.equal((await inject('PUT', '/v1/pipelines/p', { defaultTotalTokens: TOTAL, agents: AGENTS.map((name) => ({ name, minTokens: 100 })), defaultStrategy: 'fixed' })).statusCode, 200);
  assert.equal((await inject('PUT', '/v1/pipelines/p/features', { features: [{ name: 'n', type: 'numeric' }] })).statusCode, 200);
  const s = await inject('PUT', '/v1/strategies/learn', { pipeline: 'p', kind: 'learned', params: { costWeight: LAMBDA, trainEvery: 1_000_000, trainIntervalSeconds: 86_400 } });
  assert.equal(s.statusCode, 200, s.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('off-policy evaluation: one reward for every target', () => {
  it('subtracts the pipeline’s λ·cost for a static, the built-in uniform and a learned target alike', async () => {
    const N = 300;
    for (let i = 0; i < N; i++) {
      const r = await inject('POST', '/v1/allocations', { pipeline: 'p', strategy: 'learn', features: { n: i % 7 }, totalTokens: TOTAL });
      assert.equal(r.statusCode, 200, r.body);
      const b = AGENTS.map((a) => r.json().budgets[a].tokens as number);
      assert.equal((await inject('POST', '/v1/outcomes', { decisionId: r.json().decisionId, quality: quality(b), costUsd: COST })).statusCode, 202);
    }
    const training = (rt.modules.find((m) => m.name === 'learner') as LearnerModule).training;
    await eventually(async () => (await training.ingest('p')) && (await training.events('p', 1000)).length >= N, 120_000, 100);

    const ope = async (strategy: string) => {
      const r = await inject('GET', `/v1/pipelines/p/ope?strategy=${encodeURIComponent(strategy)}&resamples=100`);
      assert.equal(r.statusCode, 200, r.body);
      return r.json();
    };
    const [fixed, learned, uniform] = [await ope('fixed'), await ope('learn'), await ope('@uniform')];
    for (const o of [fixed, learned, uniform]) assert.equal(o.events, N);
    assert.equal(learned.logged, fixed.logged, 'the same events have the same mean reward whatever the target');
    assert.equal(uniform.logged, fixed.logged);
    for (const o of [fixed, learned, uniform]) assert.equal(o.costWeight, LAMBDA, `${o.strategy}: λ of the pipeline's learned strategy`);

    // The static split's true value: its quality less λ·cost. Its decisions (the safe start's candidate 0) earned exactly that.
    const fixedSplit = (await inject('POST', '/v1/allocations', { pipeline: 'p', strategy: 'fixed', features: { n: 0 }, totalTokens: TOTAL })).json().budgets;
    const truth = quality(AGENTS.map((a) => fixedSplit[a].tokens as number)) - LAMBDA * COST;
    assert.ok(fixed.matched >= 100, `${fixed.matched} decisions played the static split`);
    assert.ok(Math.abs(fixed.snips.value - truth) < 1e-6, `SNIPS ${fixed.snips.value} vs truth ${truth}`);
    assert.ok(Math.abs(fixed.dr.value - truth) < 0.02, `DR ${fixed.dr.value} vs truth ${truth}`);
    // The learned target during the safe start serves the default split: the same value, on the same reward.
    assert.ok(Math.abs(learned.snips.value - truth) < 1e-6, `learned SNIPS ${learned.snips.value} vs truth ${truth}`);
  });
});
