import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatResults } from '../../src/rollout/format.js';
import { MAX_PHASES } from '../../src/rollout/model.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { unitKeys } from './helpers.js';

// Over a real socket: the holdout is a new guarantee of the HTTP surface, not only of the router.
const prefix = testPrefix('rollout-holdout');
let rt: Running;

async function http(method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`${rt.url}${path}`, {
    method,
    ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : undefined };
}
async function ok(method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown): Promise<any> {
  const r = await http(method, path, body);
  assert.ok(r.status < 300, `${method} ${path} → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

before(async () => {
  // The job is effectively off: evaluations run through POST …/evaluate, one cycle at a time.
  rt = await startTest(prefix, { listen: true }, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await ok('PUT', '/v1/pipelines/p', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'p', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/heavy', { pipeline: 'p', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 4, validator: 1, formatter: 1 } } });
  await ok('PUT', '/v1/strategies/lean', { pipeline: 'p', kind: 'static', params: { shares: { orchestrator: 2, retriever: 1, reasoner: 2, validator: 1, formatter: 1 } } });
  await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'even' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const units = unitKeys(200, 'hold');
const allocate = (unitKey: string) => ok('POST', '/v1/allocations', { pipeline: 'p', unitKey });

/** Allocates for every unit; returns the held-out units' strategies and every response. */
async function sweep(): Promise<{ held: Map<string, string>; all: Map<string, any> }> {
  const held = new Map<string, string>();
  const all = new Map<string, any>();
  for (let i = 0; i < units.length; i += 25) {
    const batch = units.slice(i, i + 25);
    const got = await Promise.all(batch.map(allocate));
    batch.forEach((u, j) => {
      all.set(u, got[j]);
      if (got[j].reason === 'holdout') held.set(u, got[j].strategy);
    });
  }
  return { held, all };
}

async function report(responses: Iterable<any>, quality: (a: any) => number): Promise<number> {
  const list = [...responses];
  for (let i = 0; i < list.length; i += 25) {
    await Promise.all(list.slice(i, i + 25).map((a) => ok('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: quality(a) })));
  }
  return list.length;
}

const holdoutCounts = async (): Promise<number[][]> => {
  const r = await ok('GET', '/v1/experiments/hold/results');
  return r.phases.map((ph: { variants: { n: number }[] }) => ph.variants.map((v) => v.n));
};

describe('holdout over a promote, a ramp and a rollback', () => {
  it('no held-out unit ever gets a promoted strategy, and results are kept per phase', async () => {
    await ok('PUT', '/v1/experiments/hold', { pipeline: 'p', type: 'holdout', coverage: 0.2 });
    const started = await ok('POST', '/v1/experiments/hold/start');
    assert.equal(started.state.exposedDefault, 'even');
    assert.equal(started.variants[0].strategy, 'even', 'the holdout freezes the default it started with');
    await ok('PUT', '/v1/experiments/ramped', {
      pipeline: 'p',
      variants: [
        { name: 'control', strategy: 'even', weight: 1 },
        { name: 'heavy', strategy: 'heavy', weight: 1 },
      ],
      coverage: 0.5,
      ramp: { steps: [{ share: 0.5, minSamples: 10 }, { share: 1 }] },
    });
    await ok('POST', '/v1/experiments/ramped/start');
    await ok('PUT', '/v1/experiments/killme', {
      pipeline: 'p',
      variants: [
        { name: 'control', strategy: 'even', weight: 1 },
        { name: 'lean', strategy: 'lean', weight: 1 },
      ],
      coverage: 0.3,
    });
    await ok('POST', '/v1/experiments/killme/start');

    const first = await sweep();
    const held = new Set(first.held.keys());
    assert.ok(held.size > 20 && held.size < 65, `≈20 % of 200 held out, got ${held.size}`);
    assert.ok([...first.held.values()].every((s) => s === 'even'));
    // Phase 0: outcomes for every unit (held out and exposed) under the original default.
    const phase0 = await report(first.all.values(), (a) => (a.reason === 'holdout' ? 0.5 : 0.6));
    await eventually(async () => (await holdoutCounts())[0]!.reduce((s, n) => s + n, 0) >= phase0, 20_000);

    const promotedStrategies = new Set<string>();
    let violations = 0;
    const check = async (stage: string) => {
      const { held: now, all } = await sweep();
      assert.deepEqual(new Set(now.keys()), held, `${stage}: the same units stay held out`);
      for (const [u, s] of now) {
        if (promotedStrategies.has(s)) violations++;
        assert.equal(s, 'even', `${stage}: held-out unit ${u} keeps the held strategy`);
      }
      return all;
    };

    // A ramp step of another experiment.
    const ev = await ok('POST', '/v1/experiments/ramped/evaluate');
    assert.equal(ev.action, 'ramped', JSON.stringify(ev));
    await check('after a ramp');

    // A promote: every exposed unit outside the remaining experiment now gets heavy; held-out units do not.
    const promoted = await ok('POST', '/v1/experiments/ramped/promote', { variant: 'heavy' });
    assert.equal(promoted.state.status, 'stopped');
    promotedStrategies.add('heavy');
    const hold = await ok('GET', '/v1/experiments/hold');
    assert.equal(hold.state.phase, 1, 'the promote starts a new holdout phase in the same write');
    assert.equal(hold.state.exposedDefault, 'heavy');
    assert.deepEqual(
      hold.state.holdoutPhases.map((p: { phase: number; held: string; exposedDefault: string }) => [p.phase, p.held, p.exposedDefault]),
      [
        [0, 'even', 'even'],
        [1, 'even', 'heavy'],
      ],
    );
    const afterPromote = await check('after a promote');
    const exposedDefaults = [...afterPromote.values()].filter((a) => a.reason === 'default');
    assert.ok(exposedDefaults.length > 0 && exposedDefaults.every((a) => a.strategy === 'heavy' && a.route?.holdout === 'hold' && a.route?.holdoutPhase === 1));

    // A rollback of the other experiment: its units go to control; held-out units are untouched.
    await ok('POST', '/v1/experiments/killme/rollback', { reason: 'test' });
    const afterRollback = await check('after a rollback');
    assert.equal(violations, 0, 'held-out units that got a promoted strategy');

    // Phase 1 outcomes never land in phase 0.
    const phase1 = await report(afterRollback.values(), (a) => (a.reason === 'holdout' ? 0.5 : 0.7));
    await eventually(async () => ((await holdoutCounts())[1] ?? []).reduce((s, n) => s + n, 0) >= phase1, 20_000);
    const counts = await holdoutCounts();
    assert.equal(counts[0]!.reduce((s, n) => s + n, 0), phase0, 'phase 0 keeps only its own outcomes');
    const res = await ok('GET', '/v1/experiments/hold/results');
    const exposed1 = res.phases[1].variants.find((v: { variant: string }) => v.variant === 'exposed');
    assert.ok(Math.abs(exposed1.quality.mean - 0.7) < 1e-9, 'phase 1 holds only phase-1 outcomes');
    assert.match(formatResults(res), /holdout phase 1 from .* \(promote of ramped\/heavy\): held out get even, exposed default heavy/);
    assert.equal((await ok('POST', '/v1/experiments/hold/evaluate')).action, 'none', 'held out vs exposed counts match the 20/80 split: no SRM');
  });

  it('a default changed outside a promote is not mixed into the phase: uncounted until the job starts the next phase', async () => {
    await ok('PUT', '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 'lean' });
    const { held, all } = await sweep();
    assert.ok([...held.values()].every((s) => s === 'even'), 'held-out units keep their strategy');
    for (const a of all.values()) {
      if (a.reason === 'holdout') assert.equal(a.route.phase, undefined, 'a held-out decision outside a phase is not counted');
      else assert.equal(a.route?.holdout, undefined, 'nor is an exposed one');
    }
    const ev = await ok('POST', '/v1/experiments/hold/evaluate');
    assert.equal(ev.action, 'new_phase', JSON.stringify(ev));
    const hold = await ok('GET', '/v1/experiments/hold');
    assert.equal(hold.state.phase, 2);
    assert.equal(hold.state.exposedDefault, 'lean');
    assert.match(hold.state.holdoutPhases.at(-1).cause, /default changed from heavy to lean/);
    // Results name, per phase, what each population was served: the held strategy, and that phase's exposed default.
    const res = await ok('GET', '/v1/experiments/hold/results');
    assert.deepEqual(
      res.phases.map((ph: { phase: number; variants: { variant: string; strategy: string }[] }) => [ph.phase, ...ph.variants.map((v) => `${v.variant}=${v.strategy}`)]),
      hold.state.holdoutPhases.map((h: { phase: number; held: string; exposedDefault: string }) => [h.phase, `holdout=${h.held}`, `exposed=${h.exposedDefault}`]),
    );
    assert.deepEqual(res.phases.map((ph: { variants: { strategy: string }[] }) => ph.variants[1]!.strategy), ['even', 'heavy', 'lean']);
    const audit = (await ok('GET', '/v1/experiments/hold/audit')).items;
    assert.equal(audit[0].action, 'new_phase');
    assert.equal(audit[0].by, 'system:holdout');
    const a = await allocate([...all.keys()].find((u) => !held.has(u) && all.get(u).reason === 'default')!);
    assert.equal(a.route?.holdoutPhase, 2, 'counted again, in the new phase');
    // A PUT of the started holdout keeps what it holds out.
    const put = await ok('PUT', '/v1/experiments/hold', { pipeline: 'p', type: 'holdout', coverage: 0.2, description: 'edited' });
    assert.equal(put.variants[0].strategy, 'even');
    assert.equal(put.state.phase, 2);
    await ok('POST', '/v1/experiments/hold/stop');
  });
});

describe('a started holdout whose coverage changes', () => {
  it('starts a new phase: each phase is judged against its own split, and units moved between populations never mix', async () => {
    await ok('PUT', '/v1/experiments/cov', { pipeline: 'p', type: 'holdout', coverage: 0.1 });
    await ok('POST', '/v1/experiments/cov/start');
    const counts = async (): Promise<number[][]> =>
      (await ok('GET', '/v1/experiments/cov/results')).phases.map((ph: { variants: { n: number }[] }) => ph.variants.map((v) => v.n));
    const total = (c: number[] | undefined) => (c ?? []).reduce((s, n) => s + n, 0);
    const first = await sweep();
    const phase0 = await report(first.all.values(), () => 0.5);
    await eventually(async () => total((await counts())[0]) >= phase0, 20_000);
    const held0 = [...first.all.values()].filter((a) => a.reason === 'holdout').length;
    assert.ok(held0 > 5 && held0 < 45, `≈10 % of 200 held out, got ${held0}`);

    const put = await ok('PUT', '/v1/experiments/cov', { pipeline: 'p', type: 'holdout', coverage: 0.5 });
    assert.equal(put.state.phase, 1, 'a coverage change moves units between the populations: a new phase');
    assert.deepEqual(
      put.state.holdoutPhases.map((h: { phase: number; coverage: number; cause: string }) => [h.phase, h.coverage, h.cause]),
      [
        [0, 0.1, 'start'],
        [1, 0.5, 'coverage changed from 0.1 to 0.5'],
      ],
    );
    // Phase 0's counts are judged against its own 10 : 90 split: no SRM flag, nothing to acknowledge.
    assert.equal((await ok('POST', '/v1/experiments/cov/evaluate')).action, 'none');
    let res = await ok('GET', '/v1/experiments/cov/results');
    assert.deepEqual(res.phases[0].variants.map((v: { n: number }) => v.n), [held0, phase0 - held0]);
    assert.equal(res.phases[0].srm.mismatch, false, JSON.stringify(res.phases[0].srm));
    assert.equal(res.phases[1].variants.reduce((s: number, v: { n: number }) => s + v.n, 0), 0, 'the new phase starts empty');

    const second = await sweep();
    const held1 = [...second.all.values()].filter((a) => a.reason === 'holdout');
    assert.ok(held1.length > 70 && held1.length < 130, `≈50 % of 200 held out, got ${held1.length}`);
    assert.ok(held1.every((a) => a.route.experiment === 'cov' && a.route.phase === 1), 'held out in phase 1');
    const phase1 = await report(second.all.values(), () => 0.6);
    await eventually(async () => total((await counts())[1]) >= phase1, 20_000);
    assert.equal((await ok('POST', '/v1/experiments/cov/evaluate')).action, 'none');
    res = await ok('GET', '/v1/experiments/cov/results');
    assert.deepEqual(res.phases[1].variants.map((v: { n: number }) => v.n), [held1.length, phase1 - held1.length]);
    assert.equal(total(res.phases[0].variants.map((v: { n: number }) => v.n)), phase0, 'phase 0 keeps only its own outcomes');
    assert.equal(res.phases[1].srm.mismatch, false);
    assert.equal((await ok('GET', '/v1/experiments/cov')).state.srm, undefined);
    // The same coverage again keeps the phase.
    assert.equal((await ok('PUT', '/v1/experiments/cov', { pipeline: 'p', type: 'holdout', coverage: 0.5, description: 'same split' })).state.phase, 1);
    await ok('POST', '/v1/experiments/cov/stop');
  });
});

describe('a holdout at MAX_PHASES phases', () => {
  it('refuses a promote and a default change that would start another phase, with the PUT cap error, writing nothing', async () => {
    await ok('PUT', '/v1/pipelines/cap', FIVE_AGENTS);
    await ok('PUT', '/v1/strategies/cap-even', { pipeline: 'cap', kind: 'uniform' });
    await ok('PUT', '/v1/strategies/cap-heavy', { pipeline: 'cap', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 4, validator: 1, formatter: 1 } } });
    await ok('PUT', '/v1/pipelines/cap', { ...FIVE_AGENTS, defaultStrategy: 'cap-even' });
    await ok('PUT', '/v1/experiments/cap-hold', { pipeline: 'cap', type: 'holdout', coverage: 0.1 });
    await ok('POST', '/v1/experiments/cap-hold/start');
    // Each coverage change starts a phase: 49 of them take the holdout to its last phase (MAX_PHASES − 1).
    for (let i = 1; i < MAX_PHASES; i++) assert.equal((await ok('PUT', '/v1/experiments/cap-hold', { pipeline: 'cap', type: 'holdout', coverage: 0.1 + i * 0.001 })).state.phase, i);
    const full = await ok('GET', '/v1/experiments/cap-hold');
    await ok('PUT', '/v1/experiments/cap-ab', { pipeline: 'cap', variants: [{ name: 'control', strategy: 'cap-even', weight: 1 }, { name: 'heavy', strategy: 'cap-heavy', weight: 1 }] });
    await ok('POST', '/v1/experiments/cap-ab/start');
    const pipeline = await ok('GET', '/v1/pipelines/cap');

    const promote = await http('POST', '/v1/experiments/cap-ab/promote', { variant: 'heavy' });
    assert.equal(promote.status, 409, JSON.stringify(promote.json));
    assert.equal(promote.json.code, 'EXPERIMENT_STATE_CONFLICT');
    assert.match(promote.json.message, new RegExp(`experiment "cap-hold" has had ${MAX_PHASES} phases`));
    assert.equal((await ok('GET', '/v1/experiments/cap-ab')).state.status, 'running', 'the promote wrote nothing');
    assert.equal((await ok('GET', '/v1/pipelines/cap')).version, pipeline.version, 'nor the pipeline default');
    assert.equal((await ok('GET', '/v1/experiments/cap-hold')).version, full.version);

    // A default changed another way: the job's new phase is refused the same way.
    await ok('PUT', '/v1/pipelines/cap', { ...FIVE_AGENTS, defaultStrategy: 'cap-heavy' });
    const evaluated = await http('POST', '/v1/experiments/cap-hold/evaluate');
    assert.equal(evaluated.status, 409, JSON.stringify(evaluated.json));
    assert.equal(evaluated.json.code, 'EXPERIMENT_STATE_CONFLICT');
    assert.match(evaluated.json.message, new RegExp(`experiment "cap-hold" has had ${MAX_PHASES} phases`));
    const after = await ok('GET', '/v1/experiments/cap-hold');
    assert.equal(after.state.phase, MAX_PHASES - 1);
    assert.equal(after.state.holdoutPhases.length, MAX_PHASES);
    await ok('POST', '/v1/experiments/cap-hold/stop');
    await ok('POST', '/v1/experiments/cap-ab/stop');
  });
});
