import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
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

  describe('REDIS_URL', () => {
    const scheme = fc.constantFrom('redis', 'rediss', 'REDIS', 'Rediss');
    const db = fc.option(fc.integer({ min: 0, max: 15 }).map(String), { nil: undefined });
    const query = fc.option(fc.constantFrom('?family=6', '?db=2'), { nil: undefined });
    const hostname = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((a) => `[${a}]`), fc.constant('localhost'));
    const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined });
    const password = fc.stringMatching(/^[A-Za-z0-9]{8,24}$/);
    const user = fc.option(fc.stringMatching(/^[a-z]{1,8}$/), { nil: undefined });

    it('refuses a URL without a host (ioredis would read it as 127.0.0.1:6379), naming REDIS_URL, password hidden', () => {
      // redis://, redis:///0, rediss://?family=6, redis:/0 …: every form that leaves the host out.
      const hostless = fc
        .tuple(scheme, db, query, fc.constantFrom((d: string) => `//${d ? `/${d}` : ''}`, (d: string) => `///${d}`, (d: string) => `/${d}`, (d: string) => d))
        .map(([s, d, q, form]) => `${s}:${form(d ?? '')}${q ?? ''}`);
      fc.assert(
        fc.property(hostless, (url) => {
          assert.throws(() => loadConfig({ REDIS_URL: url }), (e: unknown) => e instanceof ConfigError && e.variable === 'REDIS_URL' && e.message.includes('REDIS_URL'), url);
        }),
        { seed: 61, numRuns: 300 },
      );
      // A port, or credentials, with no host before them.
      fc.assert(
        fc.property(scheme, user, password, port, (s, u, pw, p) => {
          for (const url of [`${s}://:${p ?? 7000}`, `${s}://${u ?? ''}:${pw}@`, `${s}://${u ?? ''}:${pw}@:${p ?? 7000}/0`]) {
            assert.throws(() => loadConfig({ REDIS_URL: url }), (e: unknown) => e instanceof ConfigError && e.variable === 'REDIS_URL' && !e.message.includes(pw), url);
          }
        }),
        { seed: 62, numRuns: 200 },
      );
    });

    it('accepts redis:// and rediss:// URLs with a host, as given', () => {
      fc.assert(
        fc.property(scheme, user, fc.option(password, { nil: undefined }), hostname, port, db, (s, u, pw, h, p, d) => {
          const auth = pw !== undefined ? `${u ?? ''}:${pw}@` : '';
          const url = `${s}://${auth}${h}${p !== undefined ? `:${p}` : ''}${d !== undefined ? `/${d}` : ''}`;
          assert.equal(loadConfig({ REDIS_URL: url }).redisUrl, url);
        }),
        { seed: 63, numRuns: 300 },
      );
    });

    it('refuses a database path that is not a number and port 0, password hidden', () => {
      for (const url of ['redis://u:sekret-password@h/abc', 'redis://u:sekret-password@h/0/1', 'rediss://:sekret-password@h:0']) {
        assert.throws(() => loadConfig({ REDIS_URL: url }), (e: unknown) => e instanceof ConfigError && e.variable === 'REDIS_URL' && !e.message.includes('sekret'), url);
      }
    });

    it('on a cluster (REDIS_CLUSTER_NODES) takes a URL without a host, which then gives only credentials and TLS', () => {
      for (const url of ['redis://', 'rediss://', 'rediss://?family=6']) {
        assert.equal(loadConfig({ REDIS_URL: url, REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2:7000' }).redisUrl, url);
      }
      // The seed nodes themselves need hosts; APPORTION_REDIS_SHARDS is checked on a cluster as anywhere.
      for (const nodes of [':7000', '10.0.0.1:7000,:7001', '[]:7000']) {
        assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: nodes }), (e: unknown) => e instanceof ConfigError && e.variable === 'REDIS_CLUSTER_NODES', nodes);
      }
      for (const shards of ['0', 'x', '2000']) {
        assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:7000', APPORTION_REDIS_SHARDS: shards }), (e: unknown) => e instanceof ConfigError && e.variable === 'APPORTION_REDIS_SHARDS', shards);
      }
    });
  });

  describe('HOST', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    // Mistyped addresses and names: an octet past 255, three or five numbers, empty or hyphen-edged labels, spaces,
    // characters no host name has, a bracketed IPv4.
    const malformed = fc.oneof(
      fc.tuple(octet, octet, octet, fc.integer({ min: 256, max: 99_999 }), fc.nat(3)).map(([a, b, c, big, at]) => {
        const parts = [a, b, c];
        parts.splice(at, 0, big);
        return parts.join('.');
      }),
      fc.array(octet, { minLength: 1, maxLength: 3 }).map((p) => p.join('.')),
      fc.array(octet, { minLength: 5, maxLength: 6 }).map((p) => p.join('.')),
      fc.tuple(fc.domain(), fc.constantFrom('..', '.-', '-.', ' ', '/', ':80', '@', '%', '*', '\u00e9', '!')).map(([d, bad]) => `${d.slice(0, 1)}${bad}${d.slice(1)}`),
      fc.domain().map((d) => `${d}.${'123'}`),
      fc.ipV4().map((a) => `[${a}]`),
    );

    it('refuses a malformed HOST naming it, with or without API keys (it used to fail only at listen, after Redis)', () => {
      fc.assert(
        fc.property(malformed, fc.boolean(), (host, auth) => {
          const env = { HOST: host, ...(auth ? { APPORTION_ADMIN_KEY: 'a'.repeat(20) } : {}) };
          assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && e.variable === 'HOST' && e.message.includes(`"${host}"`), host);
        }),
        { seed: 71, numRuns: 400 },
      );
    });

    it('takes IP addresses (IPv6 with or without brackets) and host names', () => {
      const auth = { APPORTION_ADMIN_KEY: 'a'.repeat(20) };
      fc.assert(
        fc.property(fc.oneof(fc.domain(), fc.ipV4(), fc.constant('localhost'), fc.constant('redis_1')), (h) => assert.equal(loadConfig({ HOST: h, ...auth }).host, h)),
        { seed: 72, numRuns: 300 },
      );
      fc.assert(
        fc.property(fc.ipV6(), fc.boolean(), (a, bracketed) => assert.equal(loadConfig({ HOST: bracketed ? `[${a}]` : a, ...auth }).host, a)),
        { seed: 73, numRuns: 200 },
      );
    });
  });

  it('binds loopback only while auth is off', () => {
    assert.equal(loadConfig({ HOST: '0.0.0.0' }).host, '127.0.0.1');
    assert.equal(loadConfig({ HOST: '0.0.0.0', APPORTION_ADMIN_KEY: 'a'.repeat(20) }).host, '0.0.0.0');
    // The HOST asked for is kept for the start-up warning (a name is not resolved when it is not used).
    assert.equal(loadConfig({ HOST: 'no-such-host.invalid' }).hostIgnored, 'no-such-host.invalid');
    assert.equal(loadConfig({ HOST: 'localhost' }).hostIgnored, undefined);
    assert.equal(loadConfig({ HOST: '0.0.0.0', APPORTION_ADMIN_KEY: 'a'.repeat(20) }).hostIgnored, undefined);
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
    // And the other way: the list holds every variable loadConfig reads, and the table documents no other.
    const source = readFileSync(new URL('../../src/config/env.ts', import.meta.url), 'utf8').split('export const CONFIG_VARIABLES')[0]!;
    const read = new Set([...source.matchAll(/env\.([A-Z][A-Z0-9_]+)|Var\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1] ?? m[2]!));
    assert.ok(read.has('PORT') && read.has('APPORTION_ALLOW_EVICTION'), [...read].join(' '));
    assert.deepEqual([...read].filter((v) => !(CONFIG_VARIABLES as readonly string[]).includes(v)), [], 'read by loadConfig but not in CONFIG_VARIABLES');
    const table = [...readme.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
    assert.deepEqual(table.filter((v) => !(CONFIG_VARIABLES as readonly string[]).includes(v)), [], 'in the README table but not read');
  });
});
