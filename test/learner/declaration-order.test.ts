/**
 * Re-applying a feature declaration that differs only in the order of its specs' fields (another tool, another
 * language's map) keeps the encoder signature, so the serving model keeps serving; a declaration stored before in
 * another order keeps its spelling when it is applied again. A real change of the declaration makes the active
 * version incompatible, and the model list says why (`incompatible`) and shows no safe-start comparison of before (the
 * guard does not judge that safe start).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import { safeStartKey } from '../../src/learner/guard-monitor.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('declaration-order');
const FEATURES: FeatureSpec[] = [
  { name: 'task', type: 'categorical', values: ['x', 'y'] },
  { name: 'n', type: 'numeric', transform: 'log' },
  { name: 'h', type: 'categorical', hashBuckets: 8 },
  { name: 'doc', type: 'tokens', mean: 3, std: 2 },
];
const AGENTS = ['a', 'b', 'c'];
let rt: Running;
const learnerOf = () => rt.modules.find((m) => m.name === 'learner') as LearnerModule;
const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

/** The same specs with each one's fields in reverse order (seeded variants: rotated too). */
const reordered = (specs: readonly FeatureSpec[], rotate: number) =>
  specs.map((f) => {
    const entries = Object.entries(f).reverse();
    const k = rotate % entries.length;
    return Object.fromEntries([...entries.slice(k), ...entries.slice(0, k)]);
  });

before(async () => {
  rt = await startTest(prefix, { workers: false });
  assert.equal((await call('PUT', '/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
  assert.equal((await call('PUT', '/v1/strategies/learn', { pipeline: 'p', kind: 'learned', params: { gate: false } })).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

async function serveVersion(features: readonly FeatureSpec[]): Promise<number> {
  const registry = learnerOf().training.registry;
  const enc = compileFeatures(features);
  const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
  const saved = await registry.save('p', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(1)), { signature: enc.signature, agents: AGENTS, metrics });
  await registry.activate(saved, { manual: true });
  return saved.version;
}

describe('a feature declaration applied again', () => {
  it('in another field order keeps the signature and the serving model', async () => {
    const put = await call('PUT', '/v1/pipelines/p/features', { features: FEATURES });
    assert.equal(put.statusCode, 200, put.body);
    const signature = put.json().signature as string;
    const version = await serveVersion(FEATURES);
    const before = (await call('GET', '/v1/models/p')).json();
    assert.equal(before.serving, 'model');
    assert.equal(before.compatible, true);
    assert.equal(before.incompatible, undefined);

    for (let rotate = 0; rotate < 3; rotate++) {
      const again = await call('PUT', '/v1/pipelines/p/features', { features: reordered(FEATURES, rotate) });
      assert.equal(again.statusCode, 200, again.body);
      assert.equal(again.json().signature, signature, `rotation ${rotate}: the same declaration in another field order`);
      assert.equal((await call('GET', '/v1/pipelines/p/features')).json().signature, signature);
      const list = (await call('GET', '/v1/models/p')).json();
      assert.equal(list.active, version);
      assert.equal(list.serving, 'model', `rotation ${rotate}: the serving model still serves`);
      assert.equal(list.compatible, true);
    }
    // A value order is the encoding: that is a change.
    const swapped = FEATURES.map((f) => (f.type === 'categorical' && f.values ? { ...f, values: [...f.values].reverse() } : f));
    const changed = await call('PUT', '/v1/pipelines/p/features', { features: swapped });
    assert.notEqual(changed.json().signature, signature);
    assert.equal((await call('PUT', '/v1/pipelines/p/features', { features: FEATURES })).json().signature, signature);
  });

  it('keeps the spelling of a declaration stored before in another order', async () => {
    // As a release that stored declarations as sent did: the fields in the order the client wrote them.
    const old = reordered(FEATURES, 1) as unknown as FeatureSpec[];
    await rt.core.store.put('features', 'p', { features: old });
    await rt.core.snapshot.refresh();
    const signature = compileFeatures(old).signature;
    assert.notEqual(signature, compileFeatures(FEATURES).signature, 'the stored spelling hashes differently');
    const version = await serveVersion(old);
    const again = await call('PUT', '/v1/pipelines/p/features', { features: FEATURES });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.json().signature, signature, 'the declaration in place, up to field order: its spelling is kept');
    const list = (await call('GET', '/v1/models/p')).json();
    assert.equal(list.active, version);
    assert.equal(list.serving, 'model');
  });

  it('changed for real: the model list says why the active version does not serve', async () => {
    const active = (await call('GET', '/v1/models/p')).json().active as number;
    // The safe start's comparison as the guard left it before a version served (the monitor keeps it in Redis).
    const latest = { at: 1, since: 0, scale: 1, status: 'insufficient', learned: { n: 4, mean: 0.5 }, control: { n: 2, mean: 0.5, strategy: '@uniform' }, diff: 0, ci: null, alpha: 0.05 };
    const sums = { n: 0, sum: 0, sumSq: 0 };
    const segment = learnerOf().training.registry.doc('p')?.guard?.since ?? 0;
    await rt.core.redis.set(safeStartKey(rt.core.keys, 'p'), JSON.stringify({ scale: 1, shrinks: 0, segment, since: 0, marker: '', evidence: { learned: sums, control: sums }, latest }));
    const added = await call('PUT', '/v1/pipelines/p/features', { features: [...FEATURES, { name: 'extra', type: 'numeric' }] });
    assert.equal(added.statusCode, 200, added.body);
    const list = (await call('GET', '/v1/models/p')).json();
    assert.equal(list.active, active);
    assert.equal(list.compatible, false);
    assert.equal(list.serving, 'default-strategy');
    assert.equal(list.guard?.safeStart?.current, undefined, 'no stale safe-start comparison: the guard does not judge this safe start');
    assert.match(list.incompatible, new RegExp(`^model ${active} was trained for features \\S+ and agents \\[a, b, c\\]; the pipeline now has ${added.json().signature} and \\[a, b, c\\]`));

    const agents = await call('PUT', '/v1/pipelines/p', { defaultTotalTokens: 3000, agents: ['a', 'c', 'b'].map((name) => ({ name })) });
    assert.equal(agents.statusCode, 200, agents.body);
    const after = (await call('GET', '/v1/models/p')).json();
    assert.match(after.incompatible, /the pipeline now has \S+ and \[a, c, b\]/);
  });

  it('refuses a feature a request cannot carry ("__proto__"), storing nothing', async () => {
    const before = (await call('GET', '/v1/pipelines/p/features')).json();
    for (const type of ['numeric', 'categorical'] as const) {
      const spec = type === 'numeric' ? { name: '__proto__', type } : { name: '__proto__', type, hashBuckets: 4 };
      const r = await call('PUT', '/v1/pipelines/p/features', { features: [{ name: 'n', type: 'numeric' }, spec] });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'INVALID_FEATURES');
      assert.match(r.json().message, /^body\/features\/1\/name: "__proto__" cannot be sent/);
    }
    assert.deepEqual((await call('GET', '/v1/pipelines/p/features')).json(), before, 'nothing stored');
    // What it guards against: such a key makes the whole allocation body unparseable.
    const alloc = await call('POST', '/v1/allocations', { pipeline: 'p' });
    assert.equal(alloc.statusCode, 200, alloc.body);
    const poisoned = await rt.app!.inject({ method: 'POST', url: '/v1/allocations', headers: { 'content-type': 'application/json' }, payload: '{"pipeline":"p","features":{"__proto__":5}}' });
    assert.equal(poisoned.statusCode, 400);
    // A tokens feature named so reads "__proto__Tokens" / "__proto__Text": it can be sent.
    const tokens = await call('PUT', '/v1/pipelines/p/features', { features: [{ name: '__proto__', type: 'tokens' }] });
    assert.equal(tokens.statusCode, 200, tokens.body);
  });
});
