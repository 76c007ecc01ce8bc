/**
 * Concurrent experiment writes over a real socket. Writes of different experiments never meet (no
 * CONCURRENT_MODIFICATION however many run at once), writes of one experiment serialise (no lost update), a layer's
 * slots are never taken twice by concurrent writers, and allocations running meanwhile never fail nor route by a
 * half-written experiment set. Inputs are generated from a seed (printed on failure).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { ExperimentStore, WriteConflict } from '../../src/rollout/store.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp, okHttp, type JsonReply } from '../helpers/http.js';

const SEED = Number(process.env.ROLLOUT_CONCURRENCY_SEED ?? 20261204);
const prefix = testPrefix('rollout-conc');
let rt: Running;
const http = jsonHttp(() => rt.url!);
const ok = okHttp(() => rt.url!);

const PIPELINES = ['cp0', 'cp1', 'cp2'];

before(async () => {
  // The job is effectively off: ramps run through POST …/evaluate.
  rt = await startTest(prefix, { listen: true }, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  for (const p of PIPELINES) {
    await ok('PUT', `/v1/pipelines/${p}`, FIVE_AGENTS);
    await ok('PUT', `/v1/strategies/${p}.even`, { pipeline: p, kind: 'uniform' });
    await ok('PUT', `/v1/strategies/${p}.lean`, { pipeline: p, kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 3, validator: 1, formatter: 1 } } });
    await ok('PUT', `/v1/pipelines/${p}`, { ...FIVE_AGENTS, defaultStrategy: `${p}.even` });
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const ab = (p: string, extra: Record<string, unknown> = {}) => ({
  pipeline: p,
  variants: [
    { name: 'control', strategy: `${p}.even`, weight: 1 },
    { name: 'lean', strategy: `${p}.lean`, weight: 1 },
  ],
  control: 'control',
  coverage: 0.5,
  ...extra,
});

/** A ramp every evaluation advances (no minimum time or sample). */
const RAMP = { steps: [{ share: 0.1 }, { share: 0.5 }, { share: 1 }] };

type Op =
  | { kind: 'create'; id: string; body: Record<string, unknown> }
  | { kind: 'update'; id: string; body: Record<string, unknown> }
  | { kind: 'start'; id: string }
  | { kind: 'ramp'; id: string };

function run(op: Op): Promise<JsonReply> {
  switch (op.kind) {
    case 'create':
    case 'update':
      return http('PUT', `/v1/experiments/${op.id}`, op.body);
    case 'start':
      return http('POST', `/v1/experiments/${op.id}/start`);
    case 'ramp':
      return http('POST', `/v1/experiments/${op.id}/evaluate`);
  }
}

/**
 * Allocates on every pipeline until `done` is set; every answer must be a 200 whose experiment (if any) is one the
 * snapshot could hold: a running experiment of that pipeline, with one of its variants.
 */
async function allocateUntil(done: { value: boolean }, tag: string): Promise<{ count: number; failures: string[] }> {
  const failures: string[] = [];
  let count = 0;
  const worker = async (w: number) => {
    for (let i = 0; !done.value; i++) {
      const p = PIPELINES[(i + w) % PIPELINES.length]!;
      const r = await http('POST', '/v1/allocations', { pipeline: p, unitKey: `${tag}-${w}-${i}` }).catch((e: unknown) => ({ status: 0, json: undefined, text: String(e) }));
      count++;
      if (r.status !== 200) failures.push(`${r.status} ${r.text}`);
      else if (r.json.experiment !== undefined && !['control', 'lean'].includes(r.json.variant)) failures.push(`unknown variant: ${r.text}`);
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
  return { count, failures };
}

describe('concurrent experiment writes', () => {
  it('≥100 concurrent writes of distinct experiments: no 409, the final state has every write, allocations never fail', async () => {
    const rng = mulberry32(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    // Existing experiments for the updates, starts and ramps (written one at a time).
    const drafts: string[] = [];
    const running: string[] = [];
    for (let i = 0; i < 36; i++) {
      const id = `pre${i}`;
      const p = pick(PIPELINES);
      await ok('PUT', `/v1/experiments/${id}`, ab(p, { ramp: RAMP }));
      if (i % 2 === 0) drafts.push(id);
      else {
        await ok('POST', `/v1/experiments/${id}/start`);
        running.push(id);
      }
    }
    // Each write touches its own experiment. Some creates take slots of shared layers (disjoint ranges, at most
    // eight per layer and tenant), so writes that depend on each other also run here.
    const ops: Op[] = [];
    const slots = new Map<string, number>();
    for (let i = 0; i < 84; i++) {
      const p = pick(PIPELINES);
      const extra: Record<string, unknown> = { description: `created ${i}` };
      if (rng() < 0.4) {
        const layer = pick(['la', 'lb', 'lc']);
        const k = slots.get(layer) ?? 0;
        if (k < 8) {
          slots.set(layer, k + 1);
          extra.layer = { id: layer, range: [k / 8, (k + 1) / 8] };
        }
      }
      ops.push({ kind: 'create', id: `new${i}`, body: ab(p, extra) });
    }
    const preDocs = new Map<string, any>();
    for (const id of [...drafts, ...running]) preDocs.set(id, (await ok('GET', `/v1/experiments/${id}`)) as unknown);
    drafts.forEach((id, i) => ops.push(i % 2 === 0 ? { kind: 'start', id } : { kind: 'update', id, body: ab(preDocs.get(id).pipeline, { ramp: RAMP, description: `updated ${id}` }) }));
    running.forEach((id, i) => ops.push(i % 2 === 0 ? { kind: 'ramp', id } : { kind: 'update', id, body: ab(preDocs.get(id).pipeline, { ramp: RAMP, description: `updated ${id}` }) }));
    // A seeded shuffle: the kinds interleave.
    for (let i = ops.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [ops[i], ops[j]] = [ops[j]!, ops[i]!];
    }
    assert.ok(ops.length >= 100);

    const done = { value: false };
    const allocations = allocateUntil(done, 'distinct');
    const replies = await Promise.all(ops.map(run));
    done.value = true;
    const alloc = await allocations;

    const failed = replies.map((r, i) => ({ r, op: ops[i]! })).filter(({ r }) => r.status !== 200);
    assert.deepEqual(
      failed.map(({ r, op }) => `${op.kind} ${op.id}: ${r.status} ${r.text}`),
      [],
      `seed ${SEED}: every write of a distinct experiment applies (${failed.filter(({ r }) => r.status === 409).length} answered 409)`,
    );
    assert.deepEqual(alloc.failures, [], `seed ${SEED}: allocations during the writes (${alloc.count})`);
    assert.ok(alloc.count > 0);

    // The final state holds every write, once.
    for (const op of ops) {
      const e = await ok('GET', `/v1/experiments/${op.id}`);
      const before = preDocs.get(op.id);
      if (op.kind === 'create') {
        assert.equal(e.version, 1, op.id);
        assert.equal(e.description, op.body.description);
        assert.deepEqual(e.layer, op.body.layer);
        assert.equal(e.state.status, 'draft');
      } else if (op.kind === 'update') {
        assert.equal(e.version, before.version + 1, op.id);
        assert.equal(e.description, `updated ${op.id}`);
        assert.equal(e.state.status, before.state.status);
      } else if (op.kind === 'start') {
        assert.equal(e.version, before.version + 1, op.id);
        assert.equal(e.state.status, 'running');
      } else {
        assert.equal(e.version, before.version + 1, op.id);
        assert.equal(e.state.rampStep, 1, `${op.id} ramped one step`);
      }
      const audit = (await ok('GET', `/v1/experiments/${op.id}/audit`)).items as { action: string }[];
      assert.equal(audit.length, e.version, `${op.id}: one audit entry per write`);
    }
    // New experiments of one id space got distinct generations, above those of the experiments that existed.
    const gens = await Promise.all(ops.filter((o) => o.kind === 'create').map(async (o) => (await ok('GET', `/v1/experiments/${o.id}`)).generation as number));
    const older = Math.max(...[...preDocs.values()].map((d) => d.generation as number));
    assert.ok(gens.every((g) => g > older));
  });

  it('concurrent writes of one experiment serialise: no lost update', async () => {
    const rng = mulberry32(SEED ^ 0x51);
    await ok('PUT', '/v1/experiments/same', ab('cp1', { ramp: { steps: Array.from({ length: 20 }, (_, i) => ({ share: (i + 1) / 20 })) } }));
    await ok('POST', '/v1/experiments/same/start');
    const start = await ok('GET', '/v1/experiments/same');
    const n = 16;
    // Replaces (each a new description), interleaved with ramp steps (each an evaluation: a read of the snapshot and
    // a write only if the experiment did not change since) and writes of other experiments.
    const ops = Array.from({ length: n }, (_, i) => (rng() < 0.5 ? { kind: 'put' as const, i } : { kind: 'ramp' as const, i }));
    const others = Array.from({ length: 20 }, (_, i) => http('PUT', `/v1/experiments/other${i}`, ab(PIPELINES[i % 3]!)));
    const done = { value: false };
    const allocations = allocateUntil(done, 'same');
    const replies = await Promise.all(
      ops.map((o) =>
        o.kind === 'put'
          ? http('PUT', '/v1/experiments/same', ab('cp1', { description: `w${o.i}`, ramp: { steps: Array.from({ length: 20 }, (_, k) => ({ share: (k + 1) / 20 })) } }))
          : http('POST', '/v1/experiments/same/evaluate'),
      ),
    );
    const otherReplies = await Promise.all(others);
    done.value = true;
    const alloc = await allocations;
    assert.deepEqual(
      replies.filter((r) => r.status !== 200).map((r) => r.text),
      [],
      `seed ${SEED}`,
    );
    assert.deepEqual(otherReplies.filter((r) => r.status !== 200).map((r) => r.text), []);
    assert.deepEqual(alloc.failures, []);

    const puts = ops.filter((o) => o.kind === 'put').length;
    const ramped = replies.filter((r, i) => ops[i]!.kind === 'ramp' && r.json.action === 'ramped').length;
    const final = await ok('GET', '/v1/experiments/same');
    // Every applied write is in the document: one version per write, and every ramp step that answered "ramped".
    assert.equal(final.version, start.version + puts + ramped, `seed ${SEED}: version counts every write`);
    assert.equal(final.state.rampStep, ramped, `seed ${SEED}: no ramp step lost`);
    // Each PUT answered a distinct version; the stored description is the one of the PUT that answered the highest.
    const putReplies = replies.filter((_, i) => ops[i]!.kind === 'put').map((r) => r.json);
    assert.equal(new Set(putReplies.map((e) => e.version)).size, puts);
    if (puts > 0) {
      const last = putReplies.reduce((a, b) => (a.version > b.version ? a : b));
      // A ramp step after the last PUT keeps its description.
      assert.equal(final.description, last.description);
    }
    const audit = (await ok('GET', '/v1/experiments/same/audit?limit=1000')).items as { action: string }[];
    assert.equal(audit.filter((a) => a.action === 'put').length, puts + 1);
    assert.equal(audit.filter((a) => a.action === 'ramp').length, ramped);
  });

  it('concurrent claims of overlapping layer ranges: the accepted ones never overlap, the others are LAYER_OVERLAP', async () => {
    const rng = mulberry32(SEED ^ 0x1a7);
    const n = 14;
    const ranges = Array.from({ length: n }, () => {
      const a = Math.floor(rng() * 9) / 10;
      const b = a + (1 + Math.floor(rng() * 3)) / 10;
      return [a, Math.min(1, Number(b.toFixed(1)))] as [number, number];
    });
    // Two pipelines of one tenant share the layer.
    const replies = await Promise.all(ranges.map((range, i) => http('PUT', `/v1/experiments/slot${i}`, ab(PIPELINES[i % 2]!, { layer: { id: 'contested', range } }))));
    const accepted = ranges.filter((_, i) => replies[i]!.status === 200);
    const refused = ranges.filter((_, i) => replies[i]!.status !== 200);
    for (const r of replies.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.code, 'LAYER_OVERLAP', r.text);
    }
    const overlaps = (x: [number, number], y: [number, number]) => x[0] < y[1] && y[0] < x[1];
    accepted.forEach((x, i) => accepted.forEach((y, j) => assert.ok(i === j || !overlaps(x, y), `seed ${SEED}: [${x}) and [${y}) both accepted`)));
    // Each refusal was decided on a stored experiment: one that is still there.
    for (const r of refused) assert.ok(accepted.some((a) => overlaps(a, r)), `seed ${SEED}: [${r}) refused without an overlapping experiment`);
    const stored = (await ok('GET', '/v1/experiments')).items.filter((e: any) => e.layer?.id === 'contested');
    assert.equal(stored.length, accepted.length);
  });

  it('a create computed from a read older than a delete of the id is refused: one id never takes a generation twice', async () => {
    const store = new ExperimentStore(rt.core.redis, rt.core.keys);
    const stale = await store.read();
    assert.equal(stale.experiments.get('again'), undefined);
    const first = await ok('PUT', '/v1/experiments/again', ab('cp2'));
    await ok('DELETE', '/v1/experiments/again');
    // The write the stale read would make: a create (expected version 0, which matches again after the delete)
    // with the generation it computed, the deleted experiment's.
    const doc = { ...first, generation: stale.seq + 1 };
    for (const k of ['id', 'version', 'effectiveCoverage']) delete doc[k];
    await assert.rejects(store.write(stale, 'again', [{ kind: 'experiments', id: 'again', doc, expectedVersion: 0 }], [], undefined), WriteConflict);
    const fresh = await ok('PUT', '/v1/experiments/again', ab('cp2'));
    assert.ok(fresh.generation > first.generation, `generation ${fresh.generation} after ${first.generation}`);
    // Created again: the record of the delete is gone.
    assert.equal(await rt.core.redis.hexists(store.deletedKey(), 'again'), 0);
  });
});
