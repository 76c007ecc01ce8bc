import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('bench-routes');
const CLIENT = 'bench-routes-client-key-0123';
let on: Running;
let off: Running;

before(async () => {
  on = await startTest(prefix, { workers: false }, { APPORTION_CLIENT_KEY: CLIENT, APPORTION_ADMIN_KEY: 'bench-routes-admin-key-0123', APPORTION_BENCH_ROUTES: 'true' });
  off = await startTest(prefix, { workers: false }, { APPORTION_CLIENT_KEY: CLIENT, APPORTION_ADMIN_KEY: 'bench-routes-admin-key-0123' });
});
after(async () => {
  await on.close();
  await off.close();
  await dropPrefix(prefix);
});

const post = (rt: Running, url: string, key = CLIENT) =>
  rt.app!.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, payload: { any: 'body' } });

describe('benchmark baseline routes', () => {
  it('answer only when APPORTION_BENCH_ROUTES is on, behind the same auth', async () => {
    for (const url of ['/bench/noop', '/bench/redis']) {
      const r = await post(on, url);
      assert.equal(r.statusCode, 200, r.body);
      assert.deepEqual(r.json(), { ok: true }, `${url}: /bench/redis answers ok only after a real PING`);
      assert.equal((await post(on, url, 'not-a-key-0123456789')).statusCode, 401);
      assert.equal((await post(off, url)).statusCode, 404, 'a valid client key gets 404 for an unknown route, not 403');
      assert.equal((await post(off, url, 'bench-routes-admin-key-0123')).statusCode, 404);
      assert.equal((await post(off, url, 'not-a-key-0123456789')).statusCode, 401);
    }
  });
});
