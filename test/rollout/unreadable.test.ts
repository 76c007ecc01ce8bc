import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { client } from './helpers.js';

const prefix = testPrefix('rollout-unreadable');
let rt: Running;
const { call, ok } = client(() => rt);

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  await ok('PUT', '/v1/pipelines/p', FIVE_AGENTS);
  await ok('PUT', '/v1/strategies/even', { pipeline: 'p', kind: 'uniform' });
  await ok('PUT', '/v1/strategies/other', { pipeline: 'p', kind: 'uniform' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const AB = {
  pipeline: 'p',
  variants: [
    { name: 'control', strategy: 'even', weight: 1 },
    { name: 'other', strategy: 'other', weight: 1 },
  ],
  control: 'control',
};

describe('a stored experiment document that does not decode', () => {
  it('refuses every experiment write with EXPERIMENT_UNREADABLE and leaves the document as it is', async () => {
    await ok('PUT', '/v1/experiments/good', AB);
    const hash = rt.core.keys.configKind('experiments');
    // Valid JSON of the wrong shape (state.status unknown, no variants), written behind the API's back
    // (no publish, so the serving snapshot is not rebuilt from it), and text that is not JSON at all.
    const corrupt = JSON.stringify({ pipeline: 'p', type: 'ab', state: { status: 'exploded', phase: 1 } });
    await rt.core.redis.hset(hash, 'broken', corrupt);

    for (const [method, url, body] of [
      ['PUT', '/v1/experiments/broken', AB],
      ['PUT', '/v1/experiments/good', { ...AB, description: 'changed' }],
      ['POST', '/v1/experiments/good/start', undefined],
      ['DELETE', '/v1/experiments/broken', undefined],
    ] as const) {
      const r = await call(method, url, body);
      assert.equal(r.statusCode, 409, `${method} ${url} → ${r.statusCode} ${r.body}`);
      const e = r.json() as { code: string; message: string };
      assert.equal(e.code, 'EXPERIMENT_UNREADABLE', r.body);
      assert.match(e.message, /"broken"/);
    }
    assert.equal(await rt.core.redis.hget(hash, 'broken'), corrupt, 'the unreadable document is not overwritten');
    const good = (await ok('GET', '/v1/experiments/good')) as { description?: string; state: { status: string } };
    assert.equal(good.description, undefined);
    assert.equal(good.state.status, 'draft');

    await rt.core.redis.hset(hash, 'broken', '{not json');
    const r = await call('PUT', '/v1/experiments/broken', AB);
    assert.equal(r.statusCode, 409, r.body);
    assert.equal(await rt.core.redis.hget(hash, 'broken'), '{not json');

    // Once it is removed, writes go through again.
    await rt.core.redis.hdel(hash, 'broken');
    await ok('PUT', '/v1/experiments/broken', AB);
    await ok('POST', '/v1/experiments/good/start');
  });
});
