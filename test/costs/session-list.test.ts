import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Running } from '../../src/server.js';
import { dropPrefix, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';

/**
 * GET /v1/console/sessions in a Redis with more keys than a bounded SCAN of the keyspace would examine (25,000
 * unrelated keys, as a day of decision records is): every session is listed, newest first, named sessions before
 * bare traces' ids, a tenant key only its own, and the listing says it was cut only when there are more.
 */
const prefix = testPrefix('session-list');
const OPERATOR = 'session-list-operator-key-0123456789';
let rt: Running;
let redis: Redis;

async function call<T = any>(method: string, url: string, key: string, body?: unknown): Promise<T> {
  const res = await fetch(`${rt.url}${url}`, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${url}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}
const span = (traceId: string, sessionId: string | undefined, at: number) => ({
  traceId,
  spanId: 'c',
  ...(sessionId ? { sessionId } : {}),
  agent: 'writer',
  model: 'gpt-4o-mini',
  provider: 'openai',
  usage: { input: 10, output: 1 },
  start: at,
  end: at + 10,
});

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: OPERATOR });
  redis = new Redis(REDIS_URL);
  // Filler under the test's own prefix (dropped after), more than 20,000 keys in all.
  for (let i = 0; i < 25_000; i += 1000) {
    const p = redis.pipeline();
    for (let j = i; j < i + 1000; j++) p.set(`${prefix}:filler:${j}`, '1', 'EX', 600);
    await p.exec();
  }
});
after(async () => {
  redis?.disconnect();
  await rt?.close();
  await dropPrefix(prefix);
});

describe('console session listing', () => {
  it('lists every session newest first in a large keyspace, and says it is cut only when it is', async () => {
    const t0 = Date.now() - 3_600_000;
    // One request per session, oldest first: each is written after the one before.
    for (let i = 0; i < 7; i++) {
      await call('POST', '/v1/spans', OPERATOR, { spans: [span(`t-${i}`, `sess-${i}`, t0 + i)] });
      await new Promise((r) => setTimeout(r, 3)); // the next write is in a later millisecond
    }
    await call('POST', '/v1/spans', OPERATOR, { spans: [span('no-session', undefined, t0)] });
    const all = await call<{ sessions: string[]; truncated: boolean }>('GET', '/v1/console/sessions', OPERATOR);
    assert.deepEqual(all, { sessions: ['sess-6', 'sess-5', 'sess-4', 'sess-3', 'sess-2', 'sess-1', 'sess-0', 'trace-no-session'], truncated: false });
    // A new span for an old session makes it the newest.
    await new Promise((r) => setTimeout(r, 3));
    await call('POST', '/v1/spans', OPERATOR, { spans: [{ ...span('t-0', 'sess-0', t0), spanId: 'again' }] });
    const cut = await call<{ sessions: string[]; truncated: boolean }>('GET', '/v1/console/sessions?limit=3', OPERATOR);
    assert.deepEqual(cut, { sessions: ['sess-0', 'sess-6', 'sess-5'], truncated: true });
    const named = await call<{ sessions: string[]; truncated: boolean }>('GET', '/v1/console/sessions?limit=7', OPERATOR);
    assert.equal(named.truncated, true, 'the bare trace is left out');
  });

  it("a tenant key lists its own sessions, by the ids it sent, and no other tenant's", async () => {
    const t0 = Date.now() - 60_000;
    const keys: Record<string, string> = {};
    for (const t of ['acme', 'beta']) {
      keys[t] = (await call<{ key: string }>('POST', '/v1/keys', OPERATOR, { tenant: t, role: 'admin', name: t })).key;
      await call('POST', '/v1/spans', keys[t]!, { spans: [span('a', `${t}-chat`, t0), span('bare', undefined, t0)] });
    }
    assert.deepEqual(await call('GET', '/v1/console/sessions', keys.acme!), { sessions: ['acme-chat', 'trace-bare'], truncated: false });
    assert.deepEqual(await call('GET', '/v1/console/sessions', keys.beta!), { sessions: ['beta-chat', 'trace-bare'], truncated: false });
    const all = (await call<{ sessions: string[] }>('GET', '/v1/console/sessions', OPERATOR)).sessions;
    for (const s of ['acme~acme-chat', 'beta~beta-chat', 'acme~trace-bare', 'beta~trace-bare']) assert.ok(all.includes(s), `${s} in ${all.join(', ')}`);
  });
});
