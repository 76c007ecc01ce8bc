import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { isApplied } from '../../src/feedback/processor.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('rollout-api');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

async function ok(method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown) {
  const r = await call(method, url, payload);
  assert.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode} ${r.body}`);
  return r.statusCode === 204 ? undefined : r.json();
}

before(async () => {
  // A long interval: these tests drive evaluation through POST …/evaluate.
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await ok('PUT', '/v1/pipelines/support', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'support', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/lean', { pipeline: 'support', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 3, validator: 1, formatter: 1 } } });
  await ok('PUT', '/v1/pipelines/support', { ...FIVE_AGENTS, defaultStrategy: 'even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const AB = { pipeline: 'support', variants: [{ name: 'control', strategy: 'even', weight: 1 }, { name: 'lean', strategy: 'lean', weight: 1 }], control: 'control' };

describe('experiment lifecycle', () => {
  it('rejects bad definitions with 4xx naming the field, and writes nothing', async () => {
    const dup = await call('PUT', '/v1/experiments/bad', { ...AB, variants: [AB.variants[0], AB.variants[0]] });
    assert.equal(dup.statusCode, 400);
    assert.match(dup.json().message, /body\/variants\/1\/name/);
    const ctl = await call('PUT', '/v1/experiments/bad', { ...AB, control: 'nope' });
    assert.equal(ctl.json().code, 'INVALID_EXPERIMENT');
    const strat = await call('PUT', '/v1/experiments/bad', { ...AB, variants: [AB.variants[0], { name: 'x', strategy: 'missing', weight: 1 }] });
    assert.equal(strat.statusCode, 404);
    const num = await call('PUT', '/v1/experiments/bad', { ...AB, targeting: { all: [{ attribute: 'tier', op: 'gt', value: 'x' }] } });
    assert.match(num.json().message, /body\/targeting\/all\/0\/value/);
    // Guardrails against a control that gets no traffic would never judge: the experiment would run unguarded.
    const idle = await call('PUT', '/v1/experiments/bad', { ...AB, variants: [{ ...AB.variants[0], weight: 0 }, AB.variants[1]], guardrails: [{ metric: 'quality' }] });
    assert.equal(idle.statusCode, 400, idle.body);
    assert.equal(idle.json().code, 'INVALID_EXPERIMENT');
    assert.match(idle.json().message, /^body\/variants\/0\/weight: control ".*" has weight 0, so no guardrail could ever compare against it/);
    assert.equal((await call('GET', '/v1/experiments/bad')).statusCode, 404);
  });

  it('draft → running → paused → running → stopped, each audited', async () => {
    const e = await ok('PUT', '/v1/experiments/life', { ...AB, coverage: 0.5 });
    assert.equal(e.state.status, 'draft');
    assert.equal(e.effectiveCoverage, 0);
    assert.equal((await call('POST', '/v1/experiments/life/pause')).statusCode, 409);
    assert.equal((await ok('POST', '/v1/experiments/life/start')).state.status, 'running');
    const units = Array.from({ length: 40 }, (_, i) => `life-${i}`);
    const variantOf = async (u: string) => (await ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: u })).variant as string | undefined;
    const before = await Promise.all(units.map(variantOf));
    assert.ok(before.some((v) => v) && before.some((v) => !v), 'coverage 0.5: some in, some out');
    assert.equal((await ok('POST', '/v1/experiments/life/pause', { reason: 'lunch' })).state.status, 'paused');
    assert.deepEqual(await Promise.all(units.map(variantOf)), units.map(() => undefined), 'paused: everyone gets the default');
    assert.equal((await call('POST', '/v1/experiments/life/pause', { reason: 7 })).statusCode, 400);
    assert.equal((await ok('POST', '/v1/experiments/life/resume')).state.status, 'running');
    assert.deepEqual(await Promise.all(units.map(variantOf)), before, 'resumed: the same assignment');
    assert.equal((await ok('POST', '/v1/experiments/life/stop')).state.status, 'stopped');
    const changed = await call('PUT', '/v1/experiments/life', AB);
    assert.equal(changed.statusCode, 409, 'an ended experiment cannot be edited');
    const audit = (await ok('GET', '/v1/experiments/life/audit')).items as { action: string; by: string }[];
    assert.deepEqual(audit.map((a) => a.action).reverse(), ['put', 'start', 'pause', 'resume', 'stop']);
    assert.deepEqual((await ok('GET', '/v1/experiments/life/audit?limit=2')).items.map((a: { action: string }) => a.action), ['stop', 'resume']);
    for (const limit of ['0', '00', '-1', '10000']) {
      const r = await call('GET', `/v1/experiments/life/audit?limit=${limit}`);
      assert.equal(r.statusCode, 400, `limit=${limit}`);
      assert.equal(r.json().code, 'VALIDATION_FAILED');
      assert.match(r.json().message, /querystring\/limit/);
    }
    assert.ok(audit.every((a) => a.by === 'anonymous'));
  });

  it('routes units stickily, returns experiment and variant, and counts outcomes per variant', async () => {
    await ok('PUT', '/v1/experiments/split', AB);
    await ok('POST', '/v1/experiments/split/start');
    const seen = new Map<string, string>();
    for (let i = 0; i < 60; i++) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: `u${i}` });
      assert.equal(a.reason, 'experiment');
      assert.equal(a.experiment, 'split');
      assert.equal(a.strategy, a.variant === 'lean' ? 'lean' : 'even');
      seen.set(`u${i}`, a.variant);
      await ok('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: a.variant === 'lean' ? 0.9 : 0.7, costUsd: 0.01, usage: { reasoner: { outputTokens: 100 } } });
    }
    for (let i = 0; i < 10; i++) {
      const again = await ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: `u${i}` });
      assert.equal(again.variant, seen.get(`u${i}`), 'sticky');
    }
    const noUnit = await ok('POST', '/v1/allocations', { pipeline: 'support' });
    assert.equal(noUnit.reason, 'default');
    assert.equal(noUnit.experiment, undefined);
    const res = await eventually(async () => {
      const r = await ok('GET', '/v1/experiments/split/results');
      return r.phases[0].variants.reduce((s: number, v: { n: number }) => s + v.n, 0) === 60 ? r : undefined;
    });
    const lean = res.phases[0].variants.find((v: { variant: string }) => v.variant === 'lean');
    assert.equal(lean.quality.mean, 0.9);
    const cmp = res.phases[0].comparisons.find((c: { metric: string }) => c.metric === 'quality');
    assert.ok(Math.abs(cmp.welch.diff - 0.2) < 1e-9);
    assert.ok(res.phases[0].srm.pValue > 0);
    assert.equal((await call('DELETE', '/v1/experiments/split')).statusCode, 409, 'running experiments cannot be deleted');
    await ok('POST', '/v1/experiments/split/stop');
    await ok('DELETE', '/v1/experiments/split');
    await ok('PUT', '/v1/experiments/split', AB);
    const fresh = await ok('GET', '/v1/experiments/split/results');
    assert.equal(fresh.phases[0].variants.reduce((s: number, v: { n: number }) => s + v.n, 0), 0, 'a re-created id starts from nothing');
    // The deleted experiment's trail went with it (ids are global: a re-created id, possibly another tenant's, must
    // not show the earlier one's changes and bodies).
    assert.deepEqual((await ok('GET', '/v1/experiments/split/audit')).items.map((a: { action: string }) => a.action), ['put']);
    await ok('DELETE', '/v1/experiments/split');
  });
});

describe('generations: an experiment deleted and created again under the same id', () => {
  const total = (r: { phases: { variants: { n: number; quality: { mean: number } }[] }[] }) => r.phases.reduce((s, p) => s + p.variants.reduce((t, v) => t + v.n, 0), 0);
  const pooledMean = (r: { phases: { variants: { n: number; quality: { mean: number } }[] }[] }) =>
    r.phases.reduce((s, p) => s + p.variants.reduce((t, v) => t + v.n * v.quality.mean, 0), 0) / total(r);

  it("never counts the late outcomes of the deleted one; the new one's outcomes count exactly once", async () => {
    const { redis, keys } = rt.core;
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 5, max: 30 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 10 }), { minLength: 60, maxLength: 60 }),
        async (before, fresh, qs) => {
          const id = `gen-${round++}`;
          const units = Array.from({ length: 40 }, (_, i) => `${id}-u${i}`);
          const q = (i: number) => qs[i]! / 10;
          const first = await ok('PUT', `/v1/experiments/${id}`, AB);
          await ok('POST', `/v1/experiments/${id}/start`);
          const old = await Promise.all(units.map((u) => ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: u })));
          assert.ok(old.every((a) => a.experiment === id));
          for (let i = 0; i < before; i++) await ok('POST', '/v1/outcomes', { decisionId: old[i].decisionId, quality: q(i) });
          await eventually(async () => total(await ok('GET', `/v1/experiments/${id}/results`)) === before);
          await ok('POST', `/v1/experiments/${id}/stop`);
          await ok('DELETE', `/v1/experiments/${id}`);
          const second = await ok('PUT', `/v1/experiments/${id}`, AB);
          await ok('POST', `/v1/experiments/${id}/start`);
          // The deleted experiment's remaining decisions report now, interleaved with the new experiment's own.
          const late = old.slice(before);
          const mine = await Promise.all(units.slice(0, fresh).map((u) => ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: `${u}-new` })));
          for (let i = 0; i < Math.max(late.length, mine.length); i++) {
            if (late[i]) await ok('POST', '/v1/outcomes', { decisionId: late[i].decisionId, quality: 1 });
            if (mine[i]) await ok('POST', '/v1/outcomes', { decisionId: mine[i].decisionId, quality: q(40 + i) });
          }
          await eventually(async () => (await Promise.all([...late, ...mine].map((a) => isApplied(redis, keys, 'support', a.decisionId)))).every(Boolean));
          const res = await ok('GET', `/v1/experiments/${id}/results`);
          assert.equal(total(res), fresh, 'only the outcomes of decisions the new experiment made');
          const want = mine.reduce((s, _a, i) => s + q(40 + i), 0) / fresh;
          assert.ok(Math.abs(pooledMean(res) - want) < 1e-9, `mean ${pooledMean(res)} vs ${want}`);
          // Decisions name the creation that made them; the late outcomes were not written anywhere either (no
          // statistics left behind under the old generation).
          assert.ok(second.generation > first.generation, 'a new creation, a new generation');
          assert.ok(old.every((a) => a.route.generation === first.generation) && mine.every((a) => a.route.generation === second.generation));
          assert.deepEqual(await redis.keys(keys.pipeline('support', 'stats', 'exp', id, `g${first.generation}`, '*')), []);
          await ok('POST', `/v1/experiments/${id}/stop`);
          await ok('DELETE', `/v1/experiments/${id}`);
        },
      ),
      { numRuns: 4, seed: 20261203, endOnFailure: true, includeErrorInReport: true },
    );
  });
});

describe('quality drop when an agent is truncated or at its ceiling', () => {
  it('compares only outcomes that reported usage for the agent: one where it did not run is in neither group', async () => {
    await ok('PUT', '/v1/experiments/drop', AB);
    await ok('POST', '/v1/experiments/drop/start');
    // Per outcome, from a seed: whether the reasoner reported usage, whether it was truncated, the quality. The
    // formatter always reports, so every outcome carries usage.
    const cases = fc.sample(fc.record({ ran: fc.boolean(), truncated: fc.boolean(), q: fc.integer({ min: 0, max: 10 }) }), { numRuns: 80, seed: 7 });
    const sent = new Map<string, typeof cases>();
    for (const [i, c] of cases.entries()) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'support', unitKey: `drop-${i}` });
      const usage = { formatter: { outputTokens: 10 }, ...(c.ran ? { reasoner: { outputTokens: 10, truncated: c.truncated } } : {}) };
      await ok('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: c.q / 10, usage });
      sent.set(a.variant, [...(sent.get(a.variant) ?? []), c]);
    }
    const res = await eventually(async () => {
      const r = await ok('GET', '/v1/experiments/drop/results');
      return r.phases[0].variants.reduce((s: number, v: { n: number }) => s + v.n, 0) === cases.length ? r : undefined;
    });
    const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
    for (const v of res.phases[0].variants) {
      const mine = sent.get(v.variant) ?? [];
      const ran = mine.filter((c) => c.ran);
      const b = v.agents.reasoner;
      assert.equal(b.n, ran.length);
      for (const split of [b.truncation, b.atCeiling]) {
        assert.equal(split.nHit, ran.filter((c) => c.truncated).length, v.variant);
        const notHit = mean(ran.filter((c) => !c.truncated).map((c) => c.q / 10));
        const hit = mean(ran.filter((c) => c.truncated).map((c) => c.q / 10));
        assert.ok(notHit === null ? split.qualityNotHit === null : Math.abs(split.qualityNotHit - notHit) < 1e-9, `${v.variant}: not hit ${split.qualityNotHit} vs ${notHit}`);
        assert.ok(hit === null ? split.qualityHit === null : Math.abs(split.qualityHit - hit) < 1e-9);
      }
    }
    await ok('POST', '/v1/experiments/drop/stop');
  });
});
