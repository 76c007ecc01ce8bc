import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ExperimentService } from '../../src/rollout/service.js';
import { ExperimentStore } from '../../src/rollout/store.js';
import { BUILTIN_UNIFORM_ID } from '../../src/strategies/schema.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, silentLog, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('rollout-ryw');
let rt: Running;

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  const r = await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: FIVE_AGENTS });
  assert.ok(r.statusCode < 300, r.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('PUT of an experiment answers from the document it wrote', () => {
  it('even when the snapshot refresh after the write did not load it (a failed or stale reload)', async () => {
    const { redis, keys } = rt.core;
    const frozen = rt.core.view(); // a snapshot from before the write, which the refresh below never replaces
    const service = new ExperimentService({ store: new ExperimentStore(redis, keys), redis, keys, view: () => frozen, refresh: async () => {}, log: silentLog });
    const body = { pipeline: 'p', variants: [{ name: 'a', strategy: BUILTIN_UNIFORM_ID, weight: 1 }, { name: 'b', strategy: BUILTIN_UNIFORM_ID, weight: 1 }] };
    const got = await service.put('ryw', body as never, 'anonymous');
    assert.equal(got.id, 'ryw');
    assert.equal((got.state as { status: string }).status, 'draft');
    assert.ok(typeof got.version === 'number' && got.version > 0);
    // What it answered is what is stored (the server's own snapshot learns of it by pub/sub).
    const stored = await eventually(async () => {
      const r = await rt.app!.inject({ method: 'GET', url: '/v1/experiments/ryw' });
      return r.statusCode === 200 ? r : undefined;
    });
    assert.equal(stored.json().version, got.version);
    assert.deepEqual(stored.json().variants, got.variants);
  });
});
