import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { client, drive, unitKeys } from './helpers.js';

const prefix = testPrefix('rollout-probe');
let rt: Running;
const api = client(() => rt);
const { call, ok } = api;

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await ok('PUT', '/v1/pipelines/p', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'p', kind: 'uniform' });
  await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('critical-path probe', () => {
  it('refuses an experiment id whose generated strategies could not be read back (probe.<id>.<agent> over 128 characters, the strategy id limit)', async () => {
    const long = 'x'.repeat(120);
    const r = await call('PUT', `/v1/experiments/${long}`, { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['reasoner'] } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'INVALID_EXPERIMENT');
    assert.match(r.json().message, /^params\/id: .* would be 135 characters, over 128/);
    assert.equal((await call('GET', `/v1/experiments/${long}`)).statusCode, 404, 'nothing written');
    // The longest id that fits for this agent is accepted, and its strategy reads back.
    const fits = 'y'.repeat(128 - 'probe..reasoner'.length);
    await ok('PUT', `/v1/experiments/${fits}`, { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['reasoner'] } });
    assert.equal((await call('GET', `/v1/strategies/probe.${fits}.reasoner`)).statusCode, 200);
    assert.equal((await call('DELETE', `/v1/experiments/${fits}`)).statusCode, 204);
  });

  it('refuses an agent named twice in probe.agents (two variants of one name would share one arm), and writes nothing', async () => {
    const r = await call('PUT', '/v1/experiments/twice', { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['reasoner', 'retriever', 'reasoner'] } });
    assert.equal(r.statusCode, 400, r.body);
    assert.equal(r.json().code, 'INVALID_EXPERIMENT');
    assert.match(r.json().message, /^body\/probe\/agents\/2: agent "reasoner" appears twice/);
    assert.equal((await call('GET', '/v1/experiments/twice')).statusCode, 404, 'nothing written');
    assert.equal((await call('GET', '/v1/strategies/probe.twice.reasoner')).statusCode, 404, 'no strategy generated');
    // Its control is the generated `control` arm: another control is refused, not ignored.
    const ctl = await call('PUT', '/v1/experiments/twice', { pipeline: 'p', type: 'probe', control: 'cut.reasoner', probe: { fraction: 0.5, agents: ['reasoner'] } });
    assert.equal(ctl.statusCode, 400, ctl.body);
    assert.match(ctl.json().message, /^body\/control: a probe's control is its "control" arm/);
    assert.equal((await call('GET', '/v1/experiments/twice')).statusCode, 404, 'nothing written');
  });

  it('never writes over a strategy that holds a generated id (a variant of a running experiment here), nor deletes it; a draft replaced with fewer agents leaves no strategy behind', async () => {
    await ok('PUT', '/v1/strategies/probe.taken.reasoner', { pipeline: 'p', kind: 'static', params: { shares: { reasoner: 3, orchestrator: 1 } } });
    await ok('PUT', '/v1/experiments/uses-it', { pipeline: 'p', variants: [{ name: 'control', strategy: 'even', weight: 1 }, { name: 'mine', strategy: 'probe.taken.reasoner', weight: 1 }] });
    await ok('POST', '/v1/experiments/uses-it/start');
    const r = await call('PUT', '/v1/experiments/taken', { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['retriever', 'reasoner'] } });
    assert.equal(r.statusCode, 409, r.body);
    assert.equal(r.json().code, 'ID_TAKEN');
    assert.match(r.json().message, /^params\/id: .*strategy "probe\.taken\.reasoner" already exists/);
    assert.equal((await call('GET', '/v1/experiments/taken')).statusCode, 404, 'nothing written');
    assert.equal((await call('GET', '/v1/strategies/probe.taken.retriever')).statusCode, 404, 'no strategy generated');
    const kept = await ok('GET', '/v1/strategies/probe.taken.reasoner');
    assert.equal(kept.kind, 'static', 'the strategy is unchanged');
    assert.equal(kept.version, 1);
    await ok('POST', '/v1/experiments/uses-it/stop');

    // A draft probe may be replaced (its own strategies rewritten); agents it no longer cuts lose their strategy.
    await ok('PUT', '/v1/experiments/redo', { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['retriever', 'formatter'] } });
    await ok('PUT', '/v1/experiments/redo', { pipeline: 'p', type: 'probe', probe: { fraction: 0.4, agents: ['retriever'] } });
    assert.equal((await ok('GET', '/v1/strategies/probe.redo.retriever')).params.fraction, 0.4);
    assert.equal((await call('GET', '/v1/strategies/probe.redo.formatter')).statusCode, 404, 'the dropped cut is deleted with the change');
    // A started probe's PUT keeps its cuts and their strategies.
    await ok('POST', '/v1/experiments/redo/start');
    await ok('PUT', '/v1/experiments/redo', { pipeline: 'p', type: 'probe', coverage: 0.5, probe: { fraction: 0.4, agents: ['retriever'] } });
    assert.equal((await ok('GET', '/v1/strategies/probe.redo.retriever')).kind, 'probe-cut', 'a started probe keeps its strategy');
    await ok('POST', '/v1/experiments/redo/stop');
    // A generated strategy replaced by hand since is not the probe's any more: deleting the probe leaves it.
    await ok('PUT', '/v1/strategies/probe.redo.retriever', { pipeline: 'p', kind: 'uniform' });
    assert.equal((await call('DELETE', '/v1/experiments/redo')).statusCode, 204);
    assert.equal((await ok('GET', '/v1/strategies/probe.redo.retriever')).kind, 'uniform');
  });

  it('cuts one agent at a time and ranks agents by quality elasticity', async () => {
    const bad = await call('PUT', '/v1/experiments/probe', { pipeline: 'p', type: 'probe', probe: { fraction: 0.5, agents: ['ghost'] } });
    assert.equal(bad.json().code, 'UNKNOWN_AGENT');
    const e = await ok('PUT', '/v1/experiments/probe', { pipeline: 'p', type: 'probe', coverage: 1, probe: { fraction: 0.5, agents: ['reasoner', 'retriever', 'formatter'] } });
    assert.deepEqual(e.variants.map((v: { name: string }) => v.name), ['control', 'cut.reasoner', 'cut.retriever', 'cut.formatter']);
    await ok('POST', '/v1/experiments/probe/start');

    const full = (await ok('POST', '/v1/allocations', { pipeline: 'p', strategy: 'even' })).budgets;
    // A simulated pipeline: quality depends strongly on the reasoner's budget, a little on the
    // retriever's, not at all on the formatter's.
    const quality = (b: Record<string, { tokens: number }>, i: number) =>
      Math.min(1, Math.max(0, 0.3 + 0.5 * (b.reasoner!.tokens / full.reasoner.tokens) + 0.1 * (b.retriever!.tokens / full.retriever.tokens) + ((i % 7) - 3) * 0.01));
    const seen = new Set<string>();
    await drive(api, {
      pipeline: 'p',
      experiment: 'probe',
      units: unitKeys(240, 'pr'),
      outcome: (a, i) => {
        seen.add(a.variant);
        if (a.variant === 'cut.reasoner') assert.equal(a.budgets.reasoner.tokens, Math.floor(full.reasoner.tokens / 2));
        if (a.variant === 'cut.formatter') assert.equal(a.budgets.reasoner.tokens, full.reasoner.tokens, 'only the cut agent changes');
        return { quality: quality(a.budgets, i), costUsd: 0.01, usage: Object.fromEntries(Object.entries(a.budgets).map(([k, v]) => [k, { outputTokens: Math.floor((v as { tokens: number }).tokens / 2) }])) };
      },
    });
    assert.equal(seen.size, 4);
    const res = await ok('GET', '/v1/experiments/probe/results');
    const cp = new Map(res.criticalPath.map((x: { agent: string }) => [x.agent, x]));
    const r = cp.get('reasoner') as { elasticity: number; critical: boolean; rank: number; budgetRatio: number; basis: string };
    assert.ok(Math.abs(r.budgetRatio - 0.5) < 0.01);
    assert.equal(r.basis, 'units', 'the interval on the arms\' unit buckets');
    assert.ok(r.elasticity > 0.5, `reasoner elasticity ${r.elasticity}`);
    assert.equal(r.critical, true);
    assert.equal(r.rank, 1);
    assert.equal((cp.get('formatter') as { critical: boolean }).critical, false);
    assert.equal((cp.get('retriever') as { rank: number }).rank, 2);
    assert.equal((await call('POST', '/v1/experiments/probe/promote', { variant: 'cut.reasoner' })).statusCode, 409, 'a probe has nothing to promote');
    await ok('POST', '/v1/experiments/probe/stop');
    await ok('DELETE', '/v1/experiments/probe');
    assert.equal((await call('GET', '/v1/strategies/probe.probe.reasoner')).statusCode, 404, 'its generated strategies go with it');
  });

  it('reads the cut from the decision records, so it works without usage reports, and says when a measure is unavailable', async () => {
    await ok('PUT', '/v1/experiments/bare', { pipeline: 'p', type: 'probe', coverage: 1, probe: { fraction: 0.5, agents: ['reasoner', 'formatter', 'validator'] } });
    await ok('POST', '/v1/experiments/bare/start');
    const full = (await ok('POST', '/v1/allocations', { pipeline: 'p', strategy: 'even' })).budgets;
    await drive(api, {
      pipeline: 'p',
      experiment: 'bare',
      units: unitKeys(240, 'bare'),
      // No usage at all; the validator's arm never reports an outcome.
      outcome: (a, i) =>
        a.variant === 'cut.validator' ? undefined : { quality: Math.min(1, 0.3 + 0.6 * (a.budgets.reasoner.tokens / full.reasoner.tokens) + ((i % 7) - 3) * 0.01) },
    });
    const res = await ok('GET', '/v1/experiments/bare/results');
    const cp = new Map<string, any>(res.criticalPath.map((x: { agent: string }) => [x.agent, x]));
    const r = cp.get('reasoner');
    assert.equal(r.budgetSource, 'decisions');
    assert.ok(Math.abs(r.budgetRatio - 0.5) < 0.01, `budget ratio ${r.budgetRatio}`);
    assert.equal(r.critical, true);
    assert.equal(r.rank, 1);
    assert.equal(cp.get('formatter').critical, false, 'measured, and not critical');
    const v = cp.get('validator');
    assert.equal(v.critical, null, 'not measured is not "not critical"');
    assert.equal(v.elasticity, null);
    assert.match(v.unavailable, /needs at least 2 outcomes in control and in cut\.validator \(has \d+ and 0\)/);
    await ok('POST', '/v1/experiments/bare/stop');
  });
});
