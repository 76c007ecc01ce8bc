import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { client, drive, unitKeys } from './helpers.js';

const prefix = testPrefix('rollout-job');
let rt: Running;
const api = client(() => rt);
const { ok } = api;

before(async () => {
  // The BullMQ repeatable job itself evaluates every 200 ms here.
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '200' });
  await ok('PUT', '/v1/pipelines/p', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'p', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/starve', { pipeline: 'p', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 1, validator: 1, formatter: 8 } } });
  await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('rollout job (BullMQ repeatable)', () => {
  it('rolls back on its own when the reasoner ceiling-hit guardrail is breached, and ramps otherwise', async () => {
    await ok('PUT', '/v1/experiments/starve', {
      pipeline: 'p',
      variants: [
        { name: 'control', strategy: 'even', weight: 1 },
        { name: 'starve', strategy: 'starve', weight: 1 },
      ],
      guardrails: [{ metric: 'ceilingHitRate', agent: 'reasoner', maxRegression: 0.1, minSamples: 30 }],
      ramp: { steps: [{ share: 0.5, minSamples: 1_000_000 }, { share: 1 }] },
    });
    await ok('POST', '/v1/experiments/starve/start');
    // The starved variant's reasoner truncates every time; control's never does.
    await drive(api, {
      pipeline: 'p',
      experiment: 'starve',
      units: unitKeys(400, 'st'),
      outcome: (a) => ({
        quality: 0.7,
        costUsd: 0.01,
        usage: { reasoner: { outputTokens: Math.floor(a.budgets.reasoner.tokens * (a.variant === 'starve' ? 1 : 0.5)), truncated: a.variant === 'starve' } },
      }),
    }).catch(() => undefined); // the job may roll back before every outcome is counted
    const e = await eventually(async () => {
      const x = await ok('GET', '/v1/experiments/starve');
      return x.state.status === 'rolled_back' ? x : undefined;
    }, 20_000);
    assert.match(e.state.rollback.reason, /ceilingHitRate:reasoner breached by variant starve/);
    assert.equal(e.state.rollback.by, 'system:guardrail');
    assert.equal(e.state.rampStep, 0, 'the ramp did not advance (its step needs far more samples)');
    await ok('POST', '/v1/experiments/starve/stop');
  });

  it('advances ramps on its own', async () => {
    await ok('PUT', '/v1/experiments/auto', {
      pipeline: 'p',
      variants: [
        { name: 'control', strategy: 'even', weight: 1 },
        { name: 'b', strategy: 'even', weight: 1 },
      ],
      ramp: { steps: [{ share: 0.01 }, { share: 0.05 }, { share: 1 }] },
    });
    await ok('POST', '/v1/experiments/auto/start');
    const e = await eventually(async () => {
      const x = await ok('GET', '/v1/experiments/auto');
      return x.state.rampStep === 2 ? x : undefined;
    }, 20_000);
    assert.equal(e.effectiveCoverage, 1);
    const steps = (await ok('GET', '/v1/experiments/auto/audit')).items.filter((a: { action: string }) => a.action === 'ramp');
    assert.equal(steps.length, 2, 'one step per evaluation, never skipping');
    await ok('POST', '/v1/experiments/auto/stop');
  });
});
