import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import type { Running } from '../../src/server.js';
import { keyStoreKeys } from '../../src/tenancy/keys.js';
import { dropPrefix, FIVE_AGENTS, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('keys');
const OPERATOR = 'keys-operator-admin-key-0123456789';
let rt: Running;
let url: string;
let redis: Redis;

async function http(method: string, path: string, opts: { key?: string; cookie?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}),
      ...(opts.cookie ? { cookie: opts.cookie } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

const createKey = async (tenant: string, role: string, extra: Record<string, unknown> = {}) => {
  const r = await http('POST', '/v1/keys', { key: OPERATOR, body: { tenant, role, name: `${tenant} ${role}`, ...extra } });
  assert.equal(r.status, 201, r.text);
  return r.json as { id: string; key: string };
};

/** Signs in and answers the cookie pair `apportion_session=<sid>` and the raw Set-Cookie header. */
async function signIn(key: string): Promise<{ cookie: string; setCookie: string }> {
  const r = await http('POST', '/v1/session', { body: { key } });
  assert.equal(r.status, 204, r.text);
  const setCookie = r.headers.get('set-cookie') ?? '';
  return { cookie: setCookie.split(';')[0]!, setCookie };
}

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: OPERATOR });
  url = rt.url!;
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await rt.close();
  redis.disconnect();
  await dropPrefix(prefix);
});

describe('API keys as data', () => {
  it('answers the key once, with its prefix; stores only a keyed hash; lists without secrets', async () => {
    const k = await createKey('acme', 'analyst');
    assert.match(k.key, /^apk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.ok(k.key.startsWith(`apk_${k.id}_`));
    const stored = await redis.hget(keyStoreKeys(prefix).records, k.id);
    assert.ok(stored);
    assert.ok(!stored.includes(k.key.split('_').slice(2).join('_')), 'the secret is not stored');
    assert.match(JSON.parse(stored).hash, /^[0-9a-f]{64}$/);
    const list = await http('GET', '/v1/keys?tenant=acme', { key: OPERATOR });
    assert.equal(list.status, 200);
    assert.ok(list.json.items.some((i: { id: string }) => i.id === k.id));
    assert.ok(!list.text.includes('hash') && !list.text.includes(k.key), 'no secret or hash listed');
    assert.equal((await http('GET', '/v1/whoami', { key: k.key })).json.role, 'analyst');
  });

  it('refuses a wrong secret for a real id, a malformed key, and an expired key', async () => {
    const k = await createKey('acme', 'client');
    const forged = `${k.key.slice(0, -4)}AAAA`;
    assert.equal((await http('GET', '/v1/whoami', { key: forged })).status, 401);
    assert.equal((await http('GET', '/v1/whoami', { key: 'apk_nothing' })).status, 401);
    const soon = await createKey('acme', 'client', { expiresAt: new Date(Date.now() + 1500).toISOString() });
    assert.equal((await http('GET', '/v1/whoami', { key: soon.key })).status, 200);
    await new Promise((r) => setTimeout(r, 1600));
    assert.equal((await http('GET', '/v1/whoami', { key: soon.key })).status, 401);
    const past = await http('POST', '/v1/keys', { key: OPERATOR, body: { tenant: 'acme', role: 'client', name: 'x', expiresAt: '2001-01-01T00:00:00Z' } });
    assert.equal(past.status, 400);
    assert.match(past.json.message, /body\/expiresAt/);
  });

  it('a tenant admin manages its own tenant’s keys only', async () => {
    const admin = await createKey('acme', 'admin');
    const other = await createKey('beta', 'client');
    const mine = await http('POST', '/v1/keys', { key: admin.key, body: { tenant: 'acme', role: 'client', name: 'by acme admin' } });
    assert.equal(mine.status, 201);
    const list = await http('GET', '/v1/keys?tenant=beta', { key: admin.key });
    assert.ok(list.json.items.length > 0 && list.json.items.every((i: { tenant: string }) => i.tenant === 'acme'), 'a tenant lists its own keys whatever ?tenant says');
    assert.equal((await http('DELETE', `/v1/keys/${other.id}`, { key: admin.key })).json.code, 'KEY_NOT_FOUND');
    assert.equal((await http('GET', '/v1/whoami', { key: other.key })).status, 200, 'not revoked by the other tenant');
  });

  it('apportion keys create | list | revoke (the CLI, over the API)', async () => {
    const env = { ...process.env, APPORTION_URL: url, APPORTION_KEY: OPERATOR };
    const cli = (...args: string[]) => run(process.execPath, [...nodeEntry('src/cli/main.ts'), 'keys', ...args], { cwd: ROOT, env });
    const created = JSON.parse((await cli('create', '--tenant', 'cli-co', '--role', 'client', '--name', 'from the shell')).stdout) as { id: string; key: string };
    assert.match(created.key, /^apk_/);
    assert.equal((await http('GET', '/v1/whoami', { key: created.key })).json.tenant, 'cli-co');
    const listed = JSON.parse((await cli('list', '--tenant', 'cli-co')).stdout) as { items: { id: string }[] };
    assert.deepEqual(listed.items.map((i) => i.id), [created.id]);
    const revoked = JSON.parse((await cli('revoke', created.id)).stdout) as { revokedAt?: string };
    assert.ok(revoked.revokedAt);
    assert.equal((await http('GET', '/v1/whoami', { key: created.key })).status, 401);
  });
});

describe('browser sessions', () => {
  it('POST /v1/session sets an HttpOnly, SameSite=Strict, Path=/ cookie that authenticates like the key', async () => {
    const k = await createKey('acme', 'admin');
    const { cookie, setCookie } = await signIn(k.key);
    assert.match(setCookie, /^apportion_session=[A-Za-z0-9_-]{43};/);
    assert.match(setCookie, /HttpOnly/i);
    assert.match(setCookie, /SameSite=Strict/i);
    assert.match(setCookie, /Path=\//);
    assert.doesNotMatch(setCookie, /Secure/i, 'not Secure over plain HTTP');
    const who = await http('GET', '/v1/whoami', { cookie });
    assert.deepEqual(who.json, { authEnabled: true, tenant: 'acme', role: 'admin', keyId: k.id });
    assert.equal((await http('POST', '/v1/session', { body: { key: 'apk_wrong' } })).status, 401);
  });

  it('state-changing requests by cookie need x-apportion-csrf or a same-origin Origin', async () => {
    const k = await createKey('acme', 'admin');
    const { cookie } = await signIn(k.key);
    const put = (headers: Record<string, string>) => http('PUT', '/v1/pipelines/csrf-p', { cookie, body: FIVE_AGENTS, headers });
    const bare = await put({});
    assert.equal(bare.status, 403);
    assert.equal(bare.json.code, 'CSRF_HEADER_REQUIRED');
    assert.equal((await put({ origin: 'https://evil.example' })).status, 403);
    assert.equal((await put({ 'x-apportion-csrf': '1' })).status, 200);
    assert.equal((await put({ origin: url })).status, 200);
    assert.equal((await http('GET', '/v1/pipelines/csrf-p', { cookie })).status, 200, 'reads need no header');
  });

  it('the proof is exactly x-apportion-csrf: 1 or an Origin of the same scheme, host and port as the server (generated)', async () => {
    const k = await createKey('acme', 'admin');
    const { cookie } = await signIn(k.key);
    const own = new URL(url);
    const header = fc.oneof(fc.constantFrom('0', 'false', '', ' ', 'true', 'yes', '11', '01', '1,1', 'null'), fc.string({ maxLength: 5 }).filter((v) => v.trim() === v));
    const origin = fc.record({
      scheme: fc.constantFrom('http', 'https', 'ws', 'ftp'),
      host: fc.constantFrom(own.hostname, 'localhost', 'evil.example', `${own.hostname}.evil.example`, own.hostname.toUpperCase()),
      port: fc.constantFrom(own.port, String(Number(own.port) + 1), '', '443'),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.option(header, { nil: undefined }), fc.option(origin, { nil: undefined }), async (h, o) => {
        const originValue = o ? `${o.scheme}://${o.host}${o.port ? `:${o.port}` : ''}` : undefined;
        const headers = { ...(h !== undefined ? { 'x-apportion-csrf': h } : {}), ...(originValue !== undefined ? { origin: originValue } : {}) };
        const sameOrigin = originValue !== undefined && new URL(originValue).origin === own.origin;
        const proven = h === '1' || sameOrigin;
        const r = await http('PUT', '/v1/pipelines/csrf-gen', { cookie, body: FIVE_AGENTS, headers });
        assert.equal(r.status, proven ? 200 : 403, `${JSON.stringify(headers)}: ${r.text}`);
        if (!proven) assert.equal(r.json.code, 'CSRF_HEADER_REQUIRED');
        if (proven) accepted++;
      }),
      { numRuns: 120, seed: 31 },
    );
    assert.ok(accepted > 0);
    assert.equal((await http('PUT', '/v1/pipelines/csrf-gen', { cookie, body: FIVE_AGENTS, headers: { 'x-apportion-csrf': '1' } })).status, 200);
    // Only the scheme differs from the server's (plain HTTP): refused.
    assert.equal((await http('PUT', '/v1/pipelines/csrf-gen', { cookie, body: FIVE_AGENTS, headers: { origin: `https://${own.host}` } })).status, 403);
    // X-Forwarded-Proto is not believed (no trusted proxy is configured), so it cannot make an https Origin pass.
    assert.equal((await http('PUT', '/v1/pipelines/csrf-gen', { cookie, body: FIVE_AGENTS, headers: { origin: `https://${own.host}`, 'x-forwarded-proto': 'https' } })).status, 403);
  });

  it('DELETE /v1/session with the cookie needs the same proof: a cross-site request does not sign the browser out', async () => {
    const k = await createKey('acme', 'analyst');
    const { cookie } = await signIn(k.key);
    for (const headers of [{}, { origin: 'http://evil.example' }, { 'x-apportion-csrf': '0' }, { origin: url.replace('http:', 'https:') }]) {
      const r = await http('DELETE', '/v1/session', { cookie, headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.equal(r.json.code, 'CSRF_HEADER_REQUIRED');
      assert.equal(r.headers.get('set-cookie'), null, 'the cookie is not cleared');
      assert.equal((await http('GET', '/v1/whoami', { cookie })).status, 200, `still signed in after ${JSON.stringify(headers)}`);
    }
    assert.equal((await http('DELETE', '/v1/session', { cookie, headers: { origin: url } })).status, 204);
    assert.equal((await http('GET', '/v1/whoami', { cookie })).status, 401);
    const again = await signIn(k.key);
    assert.equal((await http('DELETE', '/v1/session', { cookie: again.cookie, headers: { 'x-apportion-csrf': '1' } })).status, 204);
    assert.equal((await http('GET', '/v1/whoami', { cookie: again.cookie })).status, 401);
    assert.equal((await http('DELETE', '/v1/session')).status, 204, 'without a cookie there is nothing to prove');
  });

  it('revoking the key ends its sessions; DELETE /v1/session ends one and clears the cookie', async () => {
    const k = await createKey('acme', 'analyst');
    const s1 = await signIn(k.key);
    const s2 = await signIn(k.key);
    const out = await http('DELETE', '/v1/session', { cookie: s1.cookie, headers: { 'x-apportion-csrf': '1' } });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie') ?? '', /apportion_session=;.*Max-Age=0/i);
    assert.equal((await http('GET', '/v1/whoami', { cookie: s1.cookie })).status, 401);
    assert.equal((await http('GET', '/v1/whoami', { cookie: s2.cookie })).status, 200);
    assert.equal((await http('DELETE', `/v1/keys/${k.id}`, { key: OPERATOR })).status, 200);
    assert.equal((await http('GET', '/v1/whoami', { cookie: s2.cookie })).status, 401);
  });

  it('/docs and /admin/queues work in a browser: docs are public, the dashboard takes an operator session', async () => {
    assert.equal((await http('GET', '/docs/json')).status, 200);
    assert.equal((await http('GET', '/admin/queues')).status, 401);
    const op = await signIn(OPERATOR);
    assert.equal((await http('GET', '/admin/queues', { cookie: op.cookie })).status, 200);
    assert.equal((await http('GET', '/admin/queues/api/queues', { cookie: op.cookie })).status, 200);
    const tenantAdmin = await signIn((await createKey('acme', 'admin')).key);
    assert.equal((await http('GET', '/admin/queues', { cookie: tenantAdmin.cookie })).status, 403, 'the dashboard shows every tenant’s jobs');
    assert.deepEqual((await http('GET', '/v1/whoami', { cookie: op.cookie })).json, { authEnabled: true, tenant: null, role: 'admin', keyId: 'env:admin' });
  });
});

describe('auth off', () => {
  it('whoami is public and says so; everything stays open as before', async () => {
    const p = testPrefix('keys-off');
    const off = await startTest(p, { workers: false });
    try {
      const who = await off.app!.inject({ method: 'GET', url: '/v1/whoami' });
      assert.equal(who.statusCode, 200);
      assert.deepEqual(who.json(), { authEnabled: false, tenant: null, role: null, keyId: null });
      assert.equal((await off.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: FIVE_AGENTS })).statusCode, 200);
      assert.equal((await off.app!.inject({ method: 'POST', url: '/v1/session', payload: { key: 'anything' } })).statusCode, 204);
    } finally {
      await off.close();
      await dropPrefix(p);
    }
  });
});
