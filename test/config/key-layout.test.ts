/**
 * APPORTION_REDIS_SHARDS decides where decision records and span rollups live, so it is fixed per deployment: the
 * first process on a key prefix stores it in Redis, and a process started later with another value refuses to start
 * with one line naming the variable and the stored value (before, it started, and every outcome for a decision the
 * other processes made was refused as pending). After a data loss the value is stored again.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../../src/config/env.js';
import { layoutKey } from '../../src/redis/layout.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('key-layout');
const running: Running[] = [];
after(async () => {
  for (const rt of running) await rt.close();
  await dropPrefix(prefix);
});

describe('key layout settings', () => {
  it('a process with another APPORTION_REDIS_SHARDS than the deployment stored refuses to start, naming both', async () => {
    running.push(await startTest(prefix, { workers: false }, { APPORTION_REDIS_SHARDS: '2' }));
    assert.equal(await running[0]!.core.redis.hget(layoutKey(prefix), 'shards'), '2');
    running.push(await startTest(prefix, { workers: false }, { APPORTION_REDIS_SHARDS: '2' }));
    await assert.rejects(startTest(prefix, { workers: false }, { APPORTION_REDIS_SHARDS: '4' }), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.variable, 'APPORTION_REDIS_SHARDS');
      assert.match(e.message, /^Invalid configuration: APPORTION_REDIS_SHARDS is 4, but the deployment on key prefix "[^"]+" stores its data with 2 /);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    // The default (1) is a value too.
    await assert.rejects(startTest(prefix, { workers: false }), /APPORTION_REDIS_SHARDS is 1, .* with 2 /);
  });

  it('stores the value again after Redis lost its data', async () => {
    const rt = running[0]!;
    await dropPrefix(prefix);
    await rt.core.generation.check();
    assert.equal(await rt.core.redis.hget(layoutKey(prefix), 'shards'), '2');
  });
});
