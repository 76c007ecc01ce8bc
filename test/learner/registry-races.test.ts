/**
 * The model document of a pipeline is written by several processes: the trainer (a retrain's proposal, the gate's
 * verdict, an activation), the outcome worker (the runtime guard's revert, drift recovery's record) and the API (an
 * operator's rollback). Each is a read-modify-write of one document; here two server instances on one key prefix
 * (each with its own snapshot of the control plane) make them at once, and nothing any of them wrote may be lost.
 * (When the write was unconditional, a change made from a stale snapshot overwrote the other's: a revert or a
 * drift record could vanish while its caller had been told it was done.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileFeatures, type FeatureSpec } from '../../src/learner/features.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { initialWeights } from '../../src/learner/model.js';
import { ModelRegistry, type ModelVersion } from '../../src/learner/registry.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix, within } from '../helpers/env.js';

const prefix = testPrefix('registry-races');
const FEATURES: FeatureSpec[] = [{ name: 'task', type: 'categorical', values: ['x', 'y'] }];
const AGENTS = ['a', 'b', 'c'];
let one: Running;
let two: Running;
const registryOf = (rt: Running) => (rt.modules.find((m) => m.name === 'learner') as LearnerModule).training.registry;

before(async () => {
  one = await startTest(prefix, { workers: false });
  two = await startTest(prefix, { workers: false });
  const put = (url: string, payload: object) => one.app!.inject({ method: 'PUT', url, payload });
  assert.equal((await put('/v1/pipelines/p', { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) })).statusCode, 200);
  assert.equal((await put('/v1/pipelines/p/features', { features: FEATURES })).statusCode, 200);
});
after(async () => {
  await one.close();
  await two.close();
  await dropPrefix(prefix);
});

async function saved(n: number): Promise<ModelVersion[]> {
  const enc = compileFeatures(FEATURES);
  const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
  const out: ModelVersion[] = [];
  for (let i = 0; i < n; i++) out.push(await registryOf(one).save('p', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(i + 1)), { signature: enc.signature, agents: AGENTS, metrics }));
  return out;
}

describe('concurrent writes of a model document from two instances', () => {
  it('keeps every drift record and every gate verdict written at once', async () => {
    const [v1, v2, v3] = await saved(3);
    await registryOf(one).activate(v1!, { manual: true });
    await registryOf(one).propose(v2!);
    await registryOf(one).propose(v3!);
    const change = (i: number) => ({ detectedAt: 1_000 + i, version: 1, changeTs: 0, changeAt: i, mse: 0, holdoutMse: 0, z: 0, n: 0, reason: `change ${i}` });
    const gate = (i: number) => ({ status: 'candidate' as const, reason: `look ${i}`, events: i, comparisons: [], decidedAt: 2_000 + i });
    await within(
      Promise.all([
        ...Array.from({ length: 16 }, (_, i) => registryOf(i % 2 ? one : two).recordChange('p', change(i))),
        registryOf(one).recordGate('p', 2, gate(2)),
        registryOf(two).recordGate('p', 3, gate(3)),
      ]),
      60_000,
    );
    await one.core.snapshot.refresh();
    const doc = registryOf(one).doc('p')!;
    const reasons = new Set(doc.drift!.changes.map((c) => c.reason));
    for (let i = 0; i < 16; i++) assert.ok(reasons.has(`change ${i}`), `drift record ${i} lost (kept: ${[...reasons].join(', ')})`);
    assert.equal(doc.versions.find((v) => v.version === 2)?.gate?.reason, 'look 2', 'the gate verdict on version 2 was lost');
    assert.equal(doc.versions.find((v) => v.version === 3)?.gate?.reason, 'look 3', 'the gate verdict on version 3 was lost');
    assert.equal(doc.active, 1);
  });

  it('a change decided on a snapshot that has not seen the document yet is not dropped', async () => {
    // A registry whose process has not yet received the model document another process just wrote (its snapshot
    // still has none): "no document, nothing to record" must be checked against Redis, not taken as the answer.
    assert.equal((await one.app!.inject({ method: 'PUT', url: '/v1/pipelines/q', payload: { defaultTotalTokens: 3000, agents: AGENTS.map((name) => ({ name })) } })).statusCode, 200);
    assert.equal((await one.app!.inject({ method: 'PUT', url: '/v1/pipelines/q/features', payload: { features: FEATURES } })).statusCode, 200);
    const stale = one.core.view();
    assert.equal(stale.raw.kinds.models.get('q'), undefined);
    const enc = compileFeatures(FEATURES);
    const metrics = { rows: 100, steps: 0, ms: 0, trainMse: 0, holdoutMse: 0, holdoutVariance: 0, backend: 'test', costWeight: 0, buffer: 100 };
    const v = await registryOf(one).save('q', initialWeights(enc.dim, AGENTS.length, 3000, mulberry32(9)), { signature: enc.signature, agents: AGENTS, metrics });
    await registryOf(one).activate(v, { manual: true });
    let refreshed = false;
    const lagging = new ModelRegistry({
      redis: one.core.redis,
      keys: one.core.keys,
      store: one.core.store,
      log: one.core.log,
      config: { modelsDir: one.core.config.modelsDir },
      view: () => (refreshed ? one.core.view() : stale),
      snapshot: Object.assign(Object.create(one.core.snapshot) as typeof one.core.snapshot, {
        refresh: async () => {
          refreshed = true;
          await one.core.snapshot.refresh();
        },
      }),
    });
    await lagging.recordChange('q', { detectedAt: 1, version: v.version, changeTs: 0, changeAt: 0, mse: 0, holdoutMse: 0, z: 0, n: 0, reason: 'seen late' });
    await one.core.snapshot.refresh();
    assert.deepEqual(registryOf(one).doc('q')!.drift?.changes.map((c) => c.reason), ['seen late'], 'the drift record was dropped');
  });

  it('a revert that answered done is never undone by an activation written at the same time from a stale read', async () => {
    const [v4, v5] = await saved(2);
    for (let round = 0; round < 6; round++) {
      await registryOf(one).activate(v4!, { manual: true });
      await two.core.snapshot.refresh();
      const record = { reason: 'guard' as const, from: v4!.version, to: 0, at: Date.now(), diff: -0.1, ci: [-0.2, -0.01] as [number, number], learned: { n: 500, mean: 0.5 }, control: { n: 40, mean: 0.6, strategy: '@uniform' } };
      // The revert holds automatic activations for a long while: the retrain's activation must then only list v5.
      const [reverted, activated] = await within(Promise.all([registryOf(two).revert('p', record, 1_000_000), registryOf(one).activate(v5!)]), 60_000);
      await one.core.snapshot.refresh();
      const doc = registryOf(one).doc('p')!;
      if (reverted) {
        assert.ok(doc.guard?.reverts.some((r) => r.at === record.at), `round ${round}: the revert answered done but is not recorded`);
        // Either the activation came first (and the revert then took v5 out: from ≠ v5, so it would not apply) or
        // it came after, was held, and v5 is only listed.
        assert.notEqual(doc.active, v5!.version, `round ${round}: v5 serves although the revert holds activations`);
      } else {
        assert.equal(activated.active, v5!.version, `round ${round}: the revert was refused, so the activation came first`);
      }
    }
  });
});
