import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { client, unitKeys } from './helpers.js';

const prefix = testPrefix('rollout-routing');
let rt: Running;
const { call, ok } = client(() => rt);

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  for (const p of ['layered', 'held', 'targeted', 'overlap']) {
    await ok('PUT', `/v1/pipelines/${p}`, FIVE_AGENTS);
    await ok('PUT', `/v1/strategies/${p}-even`, { pipeline: p, kind: 'uniform' });
    await ok('PUT', `/v1/strategies/${p}-heavy`, { pipeline: p, kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 4, validator: 1, formatter: 1 } } });
    await ok('PUT', `/v1/pipelines/${p}`, { ...FIVE_AGENTS, defaultStrategy: `${p}-even` });
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const ab = (p: string, extra: Record<string, unknown> = {}) => ({
  pipeline: p,
  variants: [
    { name: 'control', strategy: `${p}-even`, weight: 1 },
    { name: 'heavy', strategy: `${p}-heavy`, weight: 1 },
  ],
  ...extra,
});

describe('layers', () => {
  it('concurrent writes claiming the same layer slot: exactly one wins', async () => {
    const res = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((i) => call('PUT', `/v1/experiments/race-${i}`, ab('layered', { layer: { id: 'race', range: [0.5, 0.9] } }))),
    );
    const codes = res.map((r) => r.statusCode).sort();
    assert.deepEqual(codes, [200, 409, 409, 409, 409, 409], res.map((r) => r.body).join('\n'));
    assert.ok(res.filter((r) => r.statusCode === 409).every((r) => r.json().code === 'LAYER_OVERLAP'));
  });

  it('twenty concurrent writes of different experiments all land (optimistic retries), each audited once', async () => {
    const res = await Promise.all(Array.from({ length: 20 }, (_, i) => call('PUT', `/v1/experiments/many-${i}`, ab('layered', { coverage: 0 }))));
    assert.deepEqual(res.map((r) => r.statusCode), res.map(() => 200), res.map((r) => r.body).join('\n'));
    for (let i = 0; i < 20; i++) assert.equal((await ok('GET', `/v1/experiments/many-${i}/audit`)).items.length, 1);
    await Promise.all(Array.from({ length: 20 }, (_, i) => ok('DELETE', `/v1/experiments/many-${i}`)));
  });

  it('experiments of one layer never share a unit, under concurrent allocations and config changes', async () => {
    const ranges: [number, number][] = [[0, 0.3], [0.3, 0.6], [0.6, 1]];
    for (const [i, range] of ranges.entries()) {
      await ok('PUT', `/v1/experiments/lay-${i}`, ab('layered', { layer: { id: 'main', range } }));
      await ok('POST', `/v1/experiments/lay-${i}/start`);
    }
    const units = unitKeys(400, 'lay');
    const seen = new Map<string, Set<string>>();
    // Three rounds of allocations for every unit, fired concurrently with edits that start new phases
    // (weights) and change coverage of the layer's experiments.
    const edits = (async () => {
      for (let k = 0; k < 6; k++) {
        await ok('PUT', `/v1/experiments/lay-${k % 3}`, ab('layered', { layer: { id: 'main', range: ranges[k % 3] }, coverage: k % 2 ? 0.8 : 1, variants: [{ name: 'control', strategy: 'layered-even', weight: 1 }, { name: 'heavy', strategy: 'layered-heavy', weight: 1 + k }] }));
      }
    })();
    const allocs = Promise.all(
      [0, 1, 2].flatMap(() =>
        units.map(async (u) => {
          const a = await ok('POST', '/v1/allocations', { pipeline: 'layered', unitKey: u });
          if (a.experiment) (seen.get(u) ?? seen.set(u, new Set()).get(u)!).add(a.experiment);
        }),
      ),
    );
    await Promise.all([edits, allocs]);
    for (const [u, exps] of seen) assert.equal(exps.size, 1, `unit ${u} saw ${[...exps].join(', ')}`);
    const per = [0, 1, 2].map((i) => [...seen.values()].filter((s) => s.has(`lay-${i}`)).length);
    assert.ok(per[0]! > 80 && per[1]! > 80 && per[2]! > 100, `layer split ${per}`);
  });

  it('a range that overlaps a live experiment of the layer is refused; a stopped one frees it', async () => {
    const r = await call('PUT', '/v1/experiments/lay-x', ab('layered', { layer: { id: 'main', range: [0.25, 0.35] } }));
    assert.equal(r.statusCode, 409);
    assert.match(r.json().message, /overlaps experiment "lay-0"/);
    await ok('POST', '/v1/experiments/lay-0/stop');
    await ok('PUT', '/v1/experiments/lay-x', ab('layered', { layer: { id: 'main', range: [0, 0.3] } }));
  });
});

describe('holdout', () => {
  it('a share of units always gets the default, and the rest is the exposed population', async () => {
    await ok('PUT', '/v1/experiments/hold', { pipeline: 'held', type: 'holdout', coverage: 0.2 });
    await ok('POST', '/v1/experiments/hold/start');
    await ok('PUT', '/v1/experiments/inner', ab('held'));
    await ok('POST', '/v1/experiments/inner/start');
    const dup = await call('PUT', '/v1/experiments/hold2', { pipeline: 'held', type: 'holdout', coverage: 0.1 });
    assert.equal(dup.statusCode, 409, 'one holdout per pipeline');
    let held = 0;
    const units = unitKeys(1000, 'hold');
    for (const u of units) {
      const a = await ok('POST', '/v1/allocations', { pipeline: 'held', unitKey: u });
      if (a.reason === 'holdout') {
        held++;
        assert.equal(a.strategy, 'held-even');
        assert.equal(a.variant, 'holdout');
      } else {
        assert.equal(a.experiment, 'inner');
        assert.equal(a.route.holdout, 'hold', 'exposed units are tagged for the long-term comparison');
      }
      const again = await ok('POST', '/v1/allocations', { pipeline: 'held', unitKey: u });
      assert.equal(again.reason === 'holdout', a.reason === 'holdout', 'holdout is sticky');
    }
    assert.ok(held > 160 && held < 240, `≈20 % held out, got ${held}`);
  });
});

describe('targeting', () => {
  it('matches features and unit attributes; inversion targets the complement', async () => {
    await ok('PUT', '/v1/experiments/pro', ab('targeted', { targeting: { all: [{ attribute: 'tier', op: 'in', values: ['pro', 'team'] }, { attribute: 'messageCount', op: 'gte', value: 3 }] } }));
    await ok('PUT', '/v1/experiments/not-pro', ab('targeted', { targeting: { all: [{ attribute: 'tier', op: 'in', values: ['pro', 'team'] }], invert: true } }));
    await ok('POST', '/v1/experiments/pro/start');
    await ok('POST', '/v1/experiments/not-pro/start');
    const exp = async (features: Record<string, unknown>, unitKey = 'acme:u1') => (await ok('POST', '/v1/allocations', { pipeline: 'targeted', unitKey, features })).experiment;
    assert.equal(await exp({ tier: 'pro', messageCount: 5 }), 'pro');
    assert.equal(await exp({ tier: 'pro', messageCount: 1 }), undefined, 'pro but too few messages: neither rule');
    assert.equal(await exp({ tier: 'free', messageCount: 5 }), 'not-pro');
    assert.equal(await exp({ messageCount: 5 }), 'not-pro', 'a missing attribute is not in the list');
    await ok('POST', '/v1/experiments/not-pro/stop');
    await ok('PUT', '/v1/experiments/acme', ab('targeted', { targeting: { all: [{ attribute: 'unitKey', op: 'prefix', value: 'acme:' }, { attribute: 'region', op: 'contains', value: 'eu' }] } }));
    await ok('POST', '/v1/experiments/acme/start');
    assert.equal(await exp({ region: 'eu-west' }, 'acme:u9'), 'acme');
    assert.equal(await exp({ region: 'us-east' }, 'acme:u9'), undefined);
    assert.equal(await exp({ region: 'eu-west' }, 'globex:u9'), undefined);
  });
});

describe('paused', () => {
  it("a paused experiment's units get the pipeline default, never another experiment, and come back on resume", async () => {
    // Two experiments outside layers, overlapping (the second at full coverage takes whatever the first leaves), and a
    // holdout; the first one's coverage from a seed.
    const coverage = fc.sample(fc.integer({ min: 30, max: 90 }), { numRuns: 1, seed: 5 })[0]! / 100;
    await ok('PUT', '/v1/experiments/ov-hold', { pipeline: 'overlap', type: 'holdout', coverage: 0.2 });
    await ok('PUT', '/v1/experiments/ov-a', ab('overlap', { coverage }));
    await ok('PUT', '/v1/experiments/ov-b', ab('overlap'));
    for (const e of ['ov-hold', 'ov-a', 'ov-b']) await ok('POST', `/v1/experiments/${e}/start`);
    const units = unitKeys(300, 'ov');
    const look = async () => new Map(await Promise.all(units.map(async (u) => [u, await ok('POST', '/v1/allocations', { pipeline: 'overlap', unitKey: u })] as const)));
    const key = (a: { reason: string; strategy: string; route?: Record<string, unknown> }) => JSON.stringify([a.reason, a.strategy, a.route ?? null]);
    const running = await look();
    const of = (e: string) => units.filter((u) => running.get(u)!.experiment === e);
    assert.ok(of('ov-a').length > 0 && of('ov-b').length > 0 && of('ov-hold').length > 0, 'every population has units');

    await ok('POST', '/v1/experiments/ov-a/pause');
    const pausedA = await look();
    for (const u of units) {
      const before = running.get(u)!;
      const now = pausedA.get(u)!;
      if (before.experiment === 'ov-a') {
        assert.equal(now.reason, 'default', `${u}: a paused experiment's unit gets the default`);
        assert.equal(now.strategy, 'overlap-even');
        assert.deepEqual(now.route, { holdout: 'ov-hold', holdoutPhase: 0, holdoutGeneration: before.route.holdoutGeneration }, `${u}: exposed to the default, in no experiment`);
      } else assert.equal(key(now), key(before), `${u}: the other units keep their route`);
    }
    await ok('POST', '/v1/experiments/ov-a/resume');
    const resumed = await look();
    for (const u of units) assert.equal(key(resumed.get(u)!), key(running.get(u)!), `${u}: resumed, the same assignment`);

    await ok('POST', '/v1/experiments/ov-hold/pause');
    const pausedHold = await look();
    for (const u of units) {
      const before = running.get(u)!;
      const now = pausedHold.get(u)!;
      if (before.reason === 'holdout') {
        assert.equal(now.reason, 'default', `${u}: a paused holdout's unit gets the default`);
        assert.equal(now.route, undefined, `${u}: in no experiment`);
      } else {
        const { holdout: _h, holdoutPhase: _p, holdoutGeneration: _g, ...rest } = before.route ?? {};
        assert.deepEqual([now.reason, now.strategy, now.route ?? {}], [before.reason, before.strategy, rest], `${u}: keeps its experiment, no longer tagged exposed`);
      }
    }
    await ok('POST', '/v1/experiments/ov-hold/resume');
    const back = await look();
    for (const u of units) assert.equal(key(back.get(u)!), key(running.get(u)!), `${u}: holdout resumed, the same routes`);
    for (const e of ['ov-hold', 'ov-a', 'ov-b']) await ok('POST', `/v1/experiments/${e}/stop`);
  });
});
