import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * Local evaluation's sync routes as two tenants see them: what a tenant is answered (version, ETag, state, stream
 * events) depends only on its own documents, so it does not reveal when another tenant changes anything.
 */

const prefix = testPrefix('sync-isolation');
const OPERATOR = 'sync-isolation-operator-key-0123';
type T = 'acme' | 'beta';
let rt: Running;
const client = {} as Record<T, string>;

const call = (k: string, method: 'GET' | 'PUT' | 'POST', url: string, opts: { payload?: unknown; headers?: Record<string, string>; tenant?: T; query?: Record<string, string> } = {}) =>
  rt.app!.inject({
    method,
    url,
    headers: { authorization: `Bearer ${k}`, ...(opts.tenant ? { 'x-apportion-tenant': opts.tenant } : {}), ...opts.headers },
    ...(opts.payload !== undefined ? { payload: opts.payload as object } : {}),
    ...(opts.query ? { query: opts.query } : {}),
  });

/** A change of tenant `t`'s control state, made by the operator; resolves once this process's snapshot has it. */
async function change(t: T, id: string, shares: Record<string, number>): Promise<number> {
  const r = await call(OPERATOR, 'PUT', `/v1/strategies/${id}`, { payload: { pipeline: `p-${t}`, kind: 'static', params: { shares } } });
  assert.ok(r.statusCode < 300, r.body);
  const v = await rt.core.store.version();
  await eventually(() => rt.core.snapshot.current().version >= v);
  return v;
}

const sync = async (t: T, etag?: string) => {
  const r = await call(client[t], 'GET', '/v1/sync', { headers: etag ? { 'if-none-match': etag } : {} });
  return { status: r.statusCode, etag: String(r.headers.etag), body: r.statusCode === 200 ? (r.json() as { version: number; state: { version: number; kinds: Record<string, { id: string }[]> } }) : undefined };
};

/** The stream's check (`?once=true`): its one event's data. */
const streamOnce = async (t: T) => {
  const r = await call(client[t], 'GET', '/v1/sync/stream', { query: { once: 'true' } });
  assert.equal(r.statusCode, 200);
  const data = r.body.split('\n').find((l) => l.startsWith('data: '))!;
  return JSON.parse(data.slice(6)) as { version: number; etag: string };
};

before(async () => {
  rt = await startTest(prefix, { workers: false, listen: true }, { APPORTION_ADMIN_KEY: OPERATOR, PORT: '0' });
  for (const t of ['acme', 'beta'] as const) {
    const k = await call(OPERATOR, 'POST', '/v1/keys', { payload: { tenant: t, role: 'client', name: `${t} sdk` } });
    assert.equal(k.statusCode, 201, k.body);
    client[t] = k.json().key;
    const p = await call(OPERATOR, 'PUT', `/v1/pipelines/p-${t}`, { payload: FIVE_AGENTS, tenant: t });
    assert.ok(p.statusCode < 300, p.body);
    await change(t, `s-${t}`, { orchestrator: 1, retriever: 1, reasoner: 2, validator: 1, formatter: 1 });
  }
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('GET /v1/sync per tenant', () => {
  it("keeps a tenant's version and ETag (and 304) while another tenant changes its state, and moves them on the tenant's own change", async () => {
    const a0 = await sync('acme');
    assert.equal(a0.status, 200);
    const v0 = a0.body!.version;
    assert.equal(a0.body!.state.version, v0, 'the state carries the same version');
    assert.deepEqual(
      a0.body!.state.kinds.pipelines!.map((p) => p.id),
      ['p-acme'],
    );
    assert.deepEqual(await streamOnce('acme'), { version: v0, etag: a0.etag }, 'the stream announces what GET /v1/sync answers');
    const b0 = await sync('beta');
    assert.notEqual(b0.etag, a0.etag, 'each tenant its own ETag');

    // beta changes its state three times: the global version moves, acme's answer does not.
    const global0 = rt.core.snapshot.current().version;
    for (let i = 2; i <= 4; i++) await change('beta', 's-beta', { orchestrator: 1, retriever: 1, reasoner: i, validator: 1, formatter: 1 });
    assert.ok(rt.core.snapshot.current().version > global0);
    assert.equal((await sync('acme', a0.etag)).status, 304, 'still fresh for acme');
    const a1 = await sync('acme');
    assert.deepEqual([a1.etag, a1.body!.version, a1.body!.state.version], [a0.etag, v0, v0]);
    assert.deepEqual(await streamOnce('acme'), { version: v0, etag: a0.etag });
    const b1 = await sync('beta', b0.etag);
    assert.equal(b1.status, 200, 'beta sees its own change');
    assert.ok(b1.body!.version > b0.body!.version);

    // acme's own change: a new ETag (the old one answers 200) and a higher version.
    await change('acme', 's-acme', { orchestrator: 1, retriever: 1, reasoner: 5, validator: 1, formatter: 1 });
    const a2 = await sync('acme', a0.etag);
    assert.equal(a2.status, 200);
    assert.notEqual(a2.etag, a0.etag);
    assert.ok(a2.body!.version > v0);
    assert.equal((await sync('acme', a2.etag)).status, 304);
  });

  it('the operator still gets every tenant and the global version', async () => {
    const r = await call(OPERATOR, 'GET', '/v1/sync');
    assert.equal(r.statusCode, 200);
    const global = rt.core.snapshot.current().version;
    assert.equal(r.json().version, global);
    assert.match(String(r.headers.etag), new RegExp(`^"v${global}-[A-Za-z0-9_-]{32}"$`));
    assert.deepEqual((r.json().state.kinds.pipelines as { id: string }[]).map((p) => p.id).sort(), ['p-acme', 'p-beta']);
  });
});

describe('GET /v1/sync/stream per tenant', () => {
  it("sends a tenant no event for another tenant's changes, and one for its own", async () => {
    const events: { version: number; etag: string }[] = [];
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`${rt.url}/v1/sync/stream`, { headers: { authorization: `Bearer ${client.acme}`, accept: 'text/event-stream' } }, resolve);
      req.on('error', reject);
      req.end();
    });
    try {
      assert.equal(res.statusCode, 200);
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk: string) => {
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const data = buf.slice(0, end).split('\n').find((l) => l.startsWith('data: '));
          buf = buf.slice(end + 2);
          if (data) events.push(JSON.parse(data.slice(6)) as { version: number; etag: string });
        }
      });
      await eventually(() => events.length === 1);
      const first = events[0]!;
      // Other tenant's changes, then one of acme's own: when acme's event arrives, the stream has sent nothing between.
      for (let i = 6; i <= 8; i++) await change('beta', 's-beta', { orchestrator: 1, retriever: 1, reasoner: i, validator: 1, formatter: 1 });
      await change('acme', 's-acme', { orchestrator: 1, retriever: 1, reasoner: 9, validator: 1, formatter: 1 });
      await eventually(() => events.length >= 2);
      assert.equal(events.length, 2, `one event for acme's change, none for beta's: ${JSON.stringify(events)}`);
      assert.notEqual(events[1]!.etag, first.etag);
      const now = await sync('acme');
      assert.deepEqual(events[1], { version: now.body!.version, etag: now.etag }, 'the event names what GET /v1/sync answers');
    } finally {
      res.destroy();
    }
  });
});
