import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { slotOwners } from '../../src/redis/slot-scan.js';
import { MAX_PHASES } from '../../src/rollout/model.js';
import { client, drive, unitKeys } from './helpers.js';

const prefix = testPrefix('rollout-life');
let rt: Running;
const api = client(() => rt);
const { call, ok } = api;

before(async () => {
  // The job is effectively off: each test runs one evaluation cycle through POST …/evaluate.
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await ok('PUT', '/v1/pipelines/p', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'p', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/heavy', { pipeline: 'p', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 4, validator: 1, formatter: 1 } } });
  await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const AB = {
  pipeline: 'p',
  variants: [
    { name: 'control', strategy: 'even', weight: 1 },
    { name: 'heavy', strategy: 'heavy', weight: 1 },
  ],
  control: 'control',
};

describe('ramps', () => {
  it('advance one step per evaluation once the step has its minimum sample, keeping every unit already in', async () => {
    await ok('PUT', '/v1/experiments/ramp', {
      ...AB,
      coverage: 1,
      ramp: { steps: [{ share: 0.1, minSamples: 10 }, { share: 0.5, minSamples: 10, minDurationSec: 0 }, { share: 1 }] },
    });
    const started = await ok('POST', '/v1/experiments/ramp/start');
    assert.equal(started.state.rampStep, 0);
    assert.equal(started.effectiveCoverage, 0.1);
    const units = unitKeys(300, 'ramp');
    const step0 = new Map<string, string>();
    for (const u of units) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: u });
      if (a.experiment === 'ramp') step0.set(u, a.variant);
    }
    assert.ok(step0.size > 10 && step0.size < 60, `≈10 % of 300 included, got ${step0.size}`);

    assert.equal((await ok('POST', '/v1/experiments/ramp/evaluate')).action, 'none', 'no samples yet: stays');
    await drive(api, { pipeline: 'p', experiment: 'ramp', units: [...step0.keys()], outcome: () => ({ quality: 0.8, costUsd: 0.01 }) });
    const ev = await ok('POST', '/v1/experiments/ramp/evaluate');
    assert.equal(ev.action, 'ramped', JSON.stringify(ev));
    const after1 = await ok('GET', '/v1/experiments/ramp');
    assert.equal(after1.state.rampStep, 1);
    assert.equal(after1.effectiveCoverage, 0.5);
    assert.equal((await ok('POST', '/v1/experiments/ramp/evaluate')).action, 'none', 'the new step counts its own samples');

    let included = 0;
    for (const u of units) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: u });
      if (step0.has(u)) assert.equal(a.variant, step0.get(u), `unit ${u} kept its variant`);
      if (a.experiment === 'ramp') included++;
    }
    assert.ok(included > 110 && included < 190, `≈50 % of 300 included, got ${included}`);
    const audit = (await ok('GET', '/v1/experiments/ramp/audit')).items;
    assert.equal(audit[0].action, 'ramp');
    assert.equal(audit[0].by, 'system:ramp');
    assert.deepEqual([audit[0].details.from, audit[0].details.to], [0.1, 0.5]);
    await ok('POST', '/v1/experiments/ramp/stop');
  });
});

describe('ramp edits of a started experiment', () => {
  it('never lower its exposure (a ramp added to a running experiment would send most of its units back to the default); lowering coverage still does', async () => {
    await ok('PUT', '/v1/experiments/late-ramp', { ...AB, coverage: 0.6 });
    await ok('POST', '/v1/experiments/late-ramp/start');
    const units = unitKeys(200, 'late-ramp');
    const before = new Map<string, string>();
    for (const u of units) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: u });
      if (a.experiment === 'late-ramp') before.set(u, a.variant);
    }
    assert.ok(before.size > 80, `≈60 % of 200 included, got ${before.size}`);

    // Adding a ramp whose first step shares 5 % of the coverage would expose 3 % instead of 60 %.
    const added = await call('PUT', '/v1/experiments/late-ramp', { ...AB, coverage: 0.6, ramp: { steps: [{ share: 0.05, minDurationSec: 3600 }, { share: 1 }] } });
    assert.equal(added.statusCode, 409, added.body);
    assert.equal(added.json().code, 'EXPERIMENT_STATE_CONFLICT');
    assert.match(added.json().message, /^body\/ramp\/steps\/0\/share: experiment "late-ramp" exposes 60 % of its eligible units now; this ramp would expose 3 % /);
    const kept = await ok('GET', '/v1/experiments/late-ramp');
    assert.equal(kept.effectiveCoverage, 0.6, 'nothing written');
    assert.equal(kept.ramp, undefined);
    for (const u of units) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: u });
      if (before.has(u)) assert.equal(a.variant, before.get(u), `unit ${u} kept its variant`);
    }

    // A ramp that keeps the exposure is taken, from its first step, timed and counted from the change; so is a lower
    // coverage.
    const { reported } = await drive(api, { pipeline: 'p', experiment: 'late-ramp', units: [...before.keys()], outcome: () => ({ quality: 0.8, costUsd: 0.01 }) });
    const raised = await ok('PUT', '/v1/experiments/late-ramp', { ...AB, coverage: 1, ramp: { steps: [{ share: 0.6, minSamples: 20 }, { share: 1 }] } });
    assert.equal(raised.effectiveCoverage, 0.6);
    assert.equal(raised.state.rampStep, 0);
    assert.ok(raised.state.stepStartedAt > raised.state.startedAt, 'the step is timed from the change');
    assert.equal(raised.state.stepStartSamples, reported, 'and counts its samples from it');
    assert.equal((await ok('POST', '/v1/experiments/late-ramp/evaluate')).action, 'none', `its minSamples count from the change (${reported} outcomes before it)`);
    const lower = await call('PUT', '/v1/experiments/late-ramp', { ...AB, coverage: 1, ramp: { steps: [{ share: 0.3 }, { share: 1 }] } });
    assert.equal(lower.statusCode, 409, 'a step edited down is refused too');
    assert.equal((await ok('PUT', '/v1/experiments/late-ramp', { ...AB, coverage: 0.2, ramp: { steps: [{ share: 0.6, minSamples: 20 }, { share: 1 }] } })).effectiveCoverage, 0.12);
    await ok('POST', '/v1/experiments/late-ramp/stop');
  });
});

describe('guardrails', () => {
  it('a breached guardrail rolls the experiment back in one evaluation and records why', async () => {
    await ok('PUT', '/v1/experiments/guard', {
      ...AB,
      guardrails: [
        { metric: 'cost', maxRegression: 0.5, relative: true, minSamples: 20 },
        { metric: 'quality', maxRegression: 0.02, minSamples: 20 },
      ],
    });
    await ok('POST', '/v1/experiments/guard/start');
    await drive(api, {
      pipeline: 'p',
      experiment: 'guard',
      units: unitKeys(120, 'guard'),
      outcome: (a, i) => ({ quality: (a.variant === 'heavy' ? 0.4 : 0.8) + (i % 2 ? 0.05 : -0.05), costUsd: 0.01 }),
    });
    const res = await ok('GET', '/v1/experiments/guard/results');
    const q = res.guardrails.find((g: { guardrail: { metric: string } }) => g.guardrail.metric === 'quality');
    assert.equal(q.breached, true);
    assert.equal(res.guardrails.find((g: { guardrail: { metric: string } }) => g.guardrail.metric === 'cost').breached, false, 'equal cost passes');

    const ev = await ok('POST', '/v1/experiments/guard/evaluate');
    assert.equal(ev.action, 'rolled_back');
    const e = await ok('GET', '/v1/experiments/guard');
    assert.equal(e.state.status, 'rolled_back');
    assert.match(e.state.rollback.reason, /guardrail quality breached by variant heavy/);
    assert.equal(e.state.rollback.by, 'system:guardrail');
    // Kill switch semantics: every unit of the experiment now gets control, without a variant.
    for (const u of unitKeys(30, 'guard')) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: u });
      assert.equal(a.strategy, 'even');
      assert.equal(a.variant, undefined);
    }
    assert.equal((await call('POST', '/v1/experiments/guard/start')).statusCode, 409);
    assert.equal((await ok('GET', '/v1/experiments/guard/audit')).items[0].action, 'rollback');
    // A rolled-back experiment holds its units (on control) until it is stopped.
    await ok('POST', '/v1/experiments/guard/stop');
    assert.equal((await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: 'guard-1' })).experiment, undefined);
  });

  it('a manual rollback is the kill switch', async () => {
    await ok('PUT', '/v1/experiments/kill', AB);
    await ok('POST', '/v1/experiments/kill/start');
    const r = await ok('POST', '/v1/experiments/kill/rollback', { reason: 'pager' });
    assert.equal(r.state.status, 'rolled_back');
    assert.equal(r.state.rollback.reason, 'pager');
    assert.equal((await call('POST', '/v1/experiments/kill/rollback')).statusCode, 409);
    await ok('POST', '/v1/experiments/kill/stop');
  });
});

describe('SRM', () => {
  it('flags a sample-ratio mismatch once per phase', async () => {
    await ok('PUT', '/v1/experiments/srm', AB);
    await ok('POST', '/v1/experiments/srm/start');
    // Outcomes are lost for most of one variant: the counts no longer follow the 1:1 weights.
    await drive(api, {
      pipeline: 'p',
      experiment: 'srm',
      units: unitKeys(160, 'srm'),
      outcome: (a, i) => (a.variant === 'heavy' && i % 5 !== 0 ? undefined : { quality: 0.7 }),
    });
    const ev = await ok('POST', '/v1/experiments/srm/evaluate');
    assert.equal(ev.action, 'srm_flagged', JSON.stringify(ev));
    const e = await ok('GET', '/v1/experiments/srm');
    assert.ok(e.state.srm.pValue < 0.02);
    assert.equal(e.state.status, 'running', 'SRM flags, it does not roll back');
    assert.equal((await ok('POST', '/v1/experiments/srm/evaluate')).action, 'none');
    await ok('POST', '/v1/experiments/srm/stop');
  });

  it('a flag holds the ramp until an operator acknowledges it with a reason; the test then restarts on later outcomes', async () => {
    await ok('PUT', '/v1/experiments/srm-ack', { ...AB, ramp: { steps: [{ share: 1, minSamples: 1 }, { share: 1 }] } });
    await ok('POST', '/v1/experiments/srm-ack/start');
    const lossy = (a: { variant?: string }, i: number) => (a.variant === 'heavy' && i % 5 !== 0 ? undefined : { quality: 0.7 });
    const noFlag = await call('POST', '/v1/experiments/srm-ack/srm/acknowledge', { reason: 'nothing to acknowledge' });
    assert.equal(noFlag.statusCode, 409);
    assert.match(noFlag.json().message, /no sample-ratio-mismatch flag/);
    await drive(api, { pipeline: 'p', experiment: 'srm-ack', units: unitKeys(160, 'srm-ack'), outcome: lossy });
    assert.equal((await ok('POST', '/v1/experiments/srm-ack/evaluate')).action, 'srm_flagged');
    assert.equal((await ok('POST', '/v1/experiments/srm-ack/evaluate')).action, 'none', 'the flag holds the ramp');
    assert.equal((await ok('GET', '/v1/experiments/srm-ack')).state.rampStep, 0);

    const noReason = await call('POST', '/v1/experiments/srm-ack/srm/acknowledge', {});
    assert.equal(noReason.statusCode, 400);
    assert.match(noReason.json().message, /reason/);
    const acked = await ok('POST', '/v1/experiments/srm-ack/srm/acknowledge', { reason: 'heavy outcomes were dropped by a logging bug, fixed in #123' });
    assert.equal(acked.state.srm.acknowledged.reason, 'heavy outcomes were dropped by a logging bug, fixed in #123');
    assert.equal(acked.state.srm.acknowledged.by, 'anonymous');
    const audit = (await ok('GET', '/v1/experiments/srm-ack/audit')).items;
    assert.equal(audit[0].action, 'srm_acknowledged');
    assert.equal(audit[0].details.reason, 'heavy outcomes were dropped by a logging bug, fixed in #123');
    assert.equal((await call('POST', '/v1/experiments/srm-ack/srm/acknowledge', { reason: 'again' })).statusCode, 409, 'acknowledged once');

    assert.equal((await ok('POST', '/v1/experiments/srm-ack/evaluate')).action, 'ramped', 'the ramp resumes');
    // Balanced outcomes after the acknowledgement: the restarted test does not flag the old imbalance again.
    await drive(api, { pipeline: 'p', experiment: 'srm-ack', units: unitKeys(40, 'srm-ack-ok'), outcome: () => ({ quality: 0.7 }) });
    assert.equal((await ok('POST', '/v1/experiments/srm-ack/evaluate')).action, 'none');
    // A mismatch that persists is flagged again, on the outcomes since the acknowledgement.
    await drive(api, { pipeline: 'p', experiment: 'srm-ack', units: unitKeys(200, 'srm-ack-2'), outcome: lossy });
    const again = await ok('POST', '/v1/experiments/srm-ack/evaluate');
    assert.equal(again.action, 'srm_flagged', JSON.stringify(again));
    const flagged = await ok('GET', '/v1/experiments/srm-ack');
    assert.equal(flagged.state.srm.acknowledged, undefined, 'a new flag, not yet acknowledged');
    assert.ok((await ok('GET', '/v1/experiments/srm-ack/audit')).items[0].details.sinceAcknowledged);
    await ok('POST', '/v1/experiments/srm-ack/stop');
  });
});

describe('phases and promote', () => {
  it('changing weights starts a new phase whose results are kept apart', async () => {
    await ok('PUT', '/v1/experiments/phases', AB);
    await ok('POST', '/v1/experiments/phases/start');
    await drive(api, { pipeline: 'p', experiment: 'phases', units: unitKeys(40, 'ph'), outcome: () => ({ quality: 0.5 }) });
    const same = await ok('PUT', '/v1/experiments/phases', { ...AB, description: 'text only' });
    assert.equal(same.state.phase, 0, 'a description change keeps the phase');
    const moved = await ok('PUT', '/v1/experiments/phases', { ...AB, variants: [AB.variants[0], { ...AB.variants[1], weight: 3 }] });
    assert.equal(moved.state.phase, 1);
    await drive(api, { pipeline: 'p', experiment: 'phases', units: unitKeys(40, 'ph'), outcome: () => ({ quality: 0.9 }) });
    const res = await ok('GET', '/v1/experiments/phases/results');
    assert.equal(res.phases.length, 2);
    const n = (p: number) => res.phases[p].variants.reduce((s: number, v: { n: number }) => s + v.n, 0);
    assert.equal(n(0), 40);
    assert.equal(n(1), 40);
    for (const v of res.phases[1].variants) if (v.n) assert.equal(v.quality.mean, 0.9);
    await ok('POST', '/v1/experiments/phases/stop');
  });

  it("an earlier phase is read and analysed with its own variants, weights and control; delete removes every phase's statistics", async () => {
    await ok('PUT', '/v1/strategies/lean', { pipeline: 'p', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 3, validator: 1, formatter: 1 } } });
    await ok('PUT', '/v1/experiments/swap', AB);
    await ok('POST', '/v1/experiments/swap/start');
    const first = await drive(api, { pipeline: 'p', experiment: 'swap', units: unitKeys(60, 'swap'), outcome: () => ({ quality: 0.5 }) });
    // Variant heavy is replaced by lean at 1:9, and control renamed: a new assignment, a new phase.
    const swapped = {
      pipeline: 'p',
      variants: [
        { name: 'base', strategy: 'even', weight: 1 },
        { name: 'lean', strategy: 'lean', weight: 9 },
      ],
      control: 'base',
    };
    const moved = await ok('PUT', '/v1/experiments/swap', swapped);
    assert.equal(moved.state.phase, 1);
    assert.deepEqual(
      moved.state.earlierPhases.map((e: { phase: number; control: string; variants: { name: string; strategy: string; weight: number }[] }) => [e.phase, e.control, e.variants.map((v) => `${v.name}=${v.strategy}:${v.weight}`)]),
      [[0, 'control', ['control=even:1', 'heavy=heavy:1']]],
    );
    const second = await drive(api, { pipeline: 'p', experiment: 'swap', units: unitKeys(30, 'swap2'), outcome: () => ({ quality: 0.9 }) });
    const res = await ok('GET', '/v1/experiments/swap/results');
    type Arm = { variant: string; strategy: string; n: number };
    const arms = (p: number) => res.phases[p].variants.map((v: Arm) => [v.variant, v.strategy, v.n]);
    assert.deepEqual(arms(0), [
      ['control', 'even', first.byVariant.get('control') ?? 0],
      ['heavy', 'heavy', first.byVariant.get('heavy') ?? 0],
    ]);
    assert.deepEqual(arms(1), [
      ['base', 'even', second.byVariant.get('base') ?? 0],
      ['lean', 'lean', second.byVariant.get('lean') ?? 0],
    ]);
    // Phase 0 is judged against its own 1:1 split and compares heavy with its own control.
    assert.equal(res.phases[0].srm.mismatch, false, JSON.stringify(res.phases[0].srm));
    assert.ok(res.phases[0].comparisons.length > 0 && res.phases[0].comparisons.every((c: { variant: string }) => c.variant === 'heavy'));
    await ok('POST', '/v1/experiments/swap/stop');
    const { redis, keys } = rt.core;
    const pattern = keys.pipeline('p', 'stats', 'exp', 'swap', '*');
    // KEYS on the master(s) of the pipeline's slot: a cluster client would send it to any one master.
    const listed = async () => (await Promise.all((await slotOwners(redis, pattern)).map((n) => n.keys(pattern)))).flat();
    assert.ok((await listed()).some((k) => k.endsWith(':0:heavy')));
    await ok('DELETE', '/v1/experiments/swap');
    assert.deepEqual(await listed(), [], 'no phase keeps statistics after the delete');
  });

  it('a change that would start more than MAX_PHASES phases is refused, naming the field', async () => {
    await ok('PUT', '/v1/experiments/many', AB);
    await ok('POST', '/v1/experiments/many/start');
    const weighted = (w: number) => ({ ...AB, variants: [AB.variants[0], { ...AB.variants[1], weight: w }] });
    for (let i = 1; i < MAX_PHASES; i++) assert.equal((await ok('PUT', '/v1/experiments/many', weighted(i + 1))).state.phase, i);
    const full = await ok('GET', '/v1/experiments/many');
    assert.equal(full.state.earlierPhases.length, MAX_PHASES - 1);
    const refused = await call('PUT', '/v1/experiments/many', weighted(1));
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().code, 'EXPERIMENT_STATE_CONFLICT');
    assert.match(refused.json().message, /^body\/variants: /);
    assert.equal((await ok('PUT', '/v1/experiments/many', { ...weighted(MAX_PHASES), description: 'same assignment' })).state.phase, MAX_PHASES - 1, 'edits that keep the assignment still apply');
    assert.equal((await ok('GET', '/v1/experiments/many/results')).phases.length, MAX_PHASES);
    await ok('POST', '/v1/experiments/many/stop');
  });

  it('promote makes the variant the pipeline default and ends the experiment in one change', async () => {
    await ok('PUT', '/v1/experiments/promo', AB);
    assert.equal((await call('POST', '/v1/experiments/promo/promote', { variant: 'heavy' })).statusCode, 409, 'drafts cannot be promoted');
    await ok('POST', '/v1/experiments/promo/start');
    const unknown = await call('POST', '/v1/experiments/promo/promote', { variant: 'nope' });
    assert.equal(unknown.json().code, 'UNKNOWN_VARIANT');
    const before = (await ok('GET', '/v1/pipelines/p')).version;
    const e = await ok('POST', '/v1/experiments/promo/promote', { variant: 'heavy' });
    assert.equal(e.state.status, 'stopped');
    assert.equal(e.state.promoted.strategy, 'heavy');
    const p = await ok('GET', '/v1/pipelines/p');
    assert.equal(p.defaultStrategy, 'heavy');
    assert.equal(p.version, before + 1);
    const a = await ok('POST', '/v1/allocations', { pipeline: 'p', unitKey: 'anyone' });
    assert.equal(a.strategy, 'heavy');
    assert.equal(a.reason, 'default');
    const audit = (await ok('GET', '/v1/experiments/promo/audit')).items;
    assert.equal(audit[0].action, 'promote');
    assert.equal(audit[0].details.previousDefault, 'even');
    await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
  });

  it('promote after a manual rollback ships the variant; after a guardrail rollback it needs force', async () => {
    await ok('PUT', '/v1/experiments/promo-rb', AB);
    await ok('POST', '/v1/experiments/promo-rb/start');
    await ok('POST', '/v1/experiments/promo-rb/rollback', { reason: 'pager' });
    const e = await ok('POST', '/v1/experiments/promo-rb/promote', { variant: 'heavy' });
    assert.equal(e.state.status, 'stopped');
    assert.equal(e.state.promoted.strategy, 'heavy');
    assert.equal((await ok('GET', '/v1/pipelines/p')).defaultStrategy, 'heavy');
    const audit = (await ok('GET', '/v1/experiments/promo-rb/audit')).items;
    assert.equal(audit[0].action, 'promote');
    assert.equal(audit[0].details.afterRollback.reason, 'pager');
    const again = await call('POST', '/v1/experiments/promo-rb/promote', { variant: 'heavy' });
    assert.equal(again.statusCode, 409);
    assert.match(again.json().message, /has ended \(stopped\) \(variant "heavy" was promoted\); set the pipeline's defaultStrategy with PUT \/v1\/pipelines\/p, or start a new experiment/);
    await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });

    await ok('PUT', '/v1/experiments/promo-guard', { ...AB, guardrails: [{ metric: 'quality', maxRegression: 0, minSamples: 20 }] });
    await ok('POST', '/v1/experiments/promo-guard/start');
    await drive(api, { pipeline: 'p', experiment: 'promo-guard', units: unitKeys(200, 'pg'), outcome: (a, i) => ({ quality: (a.variant === 'heavy' ? 0.3 : 0.9) + ((i % 5) - 2) * 0.01 }) });
    assert.equal((await ok('POST', '/v1/experiments/promo-guard/evaluate')).action, 'rolled_back');
    const refused = await call('POST', '/v1/experiments/promo-guard/promote', { variant: 'heavy' });
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().code, 'EXPERIMENT_STATE_CONFLICT');
    assert.match(refused.json().message, /rolled back by system:guardrail .*"force": true/);
    assert.equal((await ok('GET', '/v1/pipelines/p')).defaultStrategy, 'even', 'nothing written');
    const forced = await ok('POST', '/v1/experiments/promo-guard/promote', { variant: 'heavy', force: true });
    assert.equal(forced.state.promoted.variant, 'heavy');
    assert.equal((await ok('GET', '/v1/experiments/promo-guard/audit')).items[0].details.force, true);
    await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
  });
});
