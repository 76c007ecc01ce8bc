import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/config/env.js';

describe('config', () => {
  it('has defaults and is frozen', () => {
    const c = loadConfig({});
    assert.equal(c.port, 3000);
    assert.equal(c.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(c.keyPrefix, 'apportion');
    assert.equal(c.rewardWindowSeconds, 86_400);
    assert.equal(c.authEnabled, false);
    assert.ok(Object.isFrozen(c));
  });

  for (const [name, value] of [
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['REDIS_URL', 'http://localhost'],
    ['APPORTION_KEY_PREFIX', 'has space'],
    ['LOG_LEVEL', 'loud'],
    ['APPORTION_ADMIN_KEY', 'short'],
    ['APPORTION_REWARD_WINDOW_SECONDS', '0'],
    ['APPORTION_SEED_EXAMPLES', 'maybe'],
    ['APPORTION_OTLP_GRPC_PORT', 'grpc'],
    ['APPORTION_OTLP_GRPC_PORT', '70000'],
    ['APPORTION_WORKER_METRICS_PORT', 'metrics'],
    ['APPORTION_WORKER_METRICS_PORT', '-1'],
  ] as const) {
    it(`rejects ${name}=${value} naming the variable`, () => {
      assert.throws(() => loadConfig({ [name]: value }), (e: unknown) => e instanceof ConfigError && e.variable === name && e.message.includes(name));
    });
  }

  it('binds loopback only while auth is off', () => {
    assert.equal(loadConfig({ HOST: '0.0.0.0' }).host, '127.0.0.1');
    assert.equal(loadConfig({ HOST: '0.0.0.0', APPORTION_ADMIN_KEY: 'a'.repeat(20) }).host, '0.0.0.0');
  });

  it('has no OTLP/gRPC listener unless APPORTION_OTLP_GRPC_PORT is set', () => {
    assert.equal(loadConfig({}).otlpGrpcPort, undefined);
    assert.equal(loadConfig({ APPORTION_OTLP_GRPC_PORT: ' ' }).otlpGrpcPort, undefined);
    assert.equal(loadConfig({ APPORTION_OTLP_GRPC_PORT: '4317' }).otlpGrpcPort, 4317);
    assert.equal(loadConfig({ APPORTION_OTLP_GRPC_PORT: '0' }).otlpGrpcPort, 0);
  });

  it('has no worker metrics listener unless APPORTION_WORKER_METRICS_PORT is set', () => {
    assert.equal(loadConfig({}).workerMetricsPort, undefined);
    assert.equal(loadConfig({ APPORTION_WORKER_METRICS_PORT: '9464' }).workerMetricsPort, 9464);
    assert.equal(loadConfig({ APPORTION_WORKER_METRICS_PORT: '0' }).workerMetricsPort, 0);
  });

  it('rejects the same key for admin and client', () => {
    const k = 'k'.repeat(20);
    assert.throws(() => loadConfig({ APPORTION_ADMIN_KEY: k, APPORTION_CLIENT_KEY: k }), /APPORTION_CLIENT_KEY/);
  });

  it('documents every variable in the README configuration table', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const v of CONFIG_VARIABLES) assert.match(readme, new RegExp(`\\| \`${v}\` \\|`), `README lacks ${v}`);
  });
});
