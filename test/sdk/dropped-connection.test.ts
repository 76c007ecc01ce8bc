import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApportionClient, ApportionConnectionError } from '@apportion/sdk';

/**
 * `ApportionClient.request` sends a request once more when its connection was closed before any answer (a kept-alive
 * socket the server closed while idle: undici's "other side closed") — only for calls a second delivery cannot make
 * act twice (docs/sdk.md, "Dropped connections"). A real HTTP server over a socket: each request first warms a
 * kept-alive connection with an answered GET, then the server reads the request under test and destroys its socket
 * without answering the first time it sees it, and answers it the next time. Safe calls are answered (the server saw
 * them twice); unsafe ones throw the connection error (the server saw them once). Checked to fail without the retry:
 * every safe case throws "other side closed".
 */
let server: Server;
let url: string;
/** How often each request (method, path and body) arrived. */
const seen = new Map<string, number>();
const keyOf = (method: string, path: string, body: string) => `${method} ${path} ${body}`;

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (s += c));
    req.on('end', () => resolve(s));
  });

before(async () => {
  server = createServer((req, res) => {
    void readBody(req).then((body) => {
      if (req.url === '/warm') {
        res.setHeader('content-type', 'application/json');
        res.end('{"warm":true}');
        return;
      }
      const k = keyOf(req.method!, req.url!, body);
      const n = (seen.get(k) ?? 0) + 1;
      seen.set(k, n);
      if (n === 1) {
        req.socket.destroy(); // closed before any answer, as an idle-timed-out kept-alive socket
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, attempt: n }));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const decisionId = 'mabc123-0000000000000001';
/** Every case: method, path, body, whether a dropped connection is retried. */
const CASES: readonly { method: string; path: string; body?: unknown; retried: boolean }[] = [
  { method: 'GET', path: '/v1/experiments/e1', retried: true },
  { method: 'GET', path: '/v1/experiments/e1/audit?limit=9999', retried: true },
  { method: 'PUT', path: '/v1/pipelines/sim-support-basic', body: { agents: [{ name: 'a' }] }, retried: true },
  { method: 'DELETE', path: '/v1/experiments/e1', retried: true },
  { method: 'POST', path: '/v1/outcomes', body: { decisionId, quality: 0.7 }, retried: true },
  { method: 'POST', path: '/v1/allocations', body: { pipeline: 'p', decisionId }, retried: true },
  { method: 'POST', path: '/v1/decisions/batch', body: { decisions: [] }, retried: true },
  { method: 'POST', path: '/v1/spans', body: { spans: [] }, retried: true },
  { method: 'POST', path: '/v1/reservations', body: { scope: 'tenant:t', amount: 5, idempotencyKey: 'k1' }, retried: true },
  { method: 'POST', path: '/v1/reservations/r1/commit', body: { amount: 3 }, retried: true },
  { method: 'POST', path: '/v1/reservations/r1/release', body: {}, retried: true },
  { method: 'POST', path: '/v1/reservations/r1/extend', body: { idempotencyKey: 'k2' }, retried: true },
  { method: 'POST', path: '/v1/budgets/fund', body: { scope: 'tenant:t', unit: 'TOKENS', amount: 5, idempotencyKey: 'k3' }, retried: true },
  { method: 'POST', path: '/v1/allocations', body: { pipeline: 'p' }, retried: false },
  { method: 'POST', path: '/v1/reservations/r1/extend', body: { ttlMs: 1000 }, retried: false },
  { method: 'POST', path: '/v1/experiments/e1/start', retried: false },
  { method: 'POST', path: '/v1/experiments/e1/pause', body: { reason: 'x' }, retried: false },
  { method: 'POST', path: '/v1/experiments/e1/promote', body: { variant: 'v' }, retried: false },
  { method: 'POST', path: '/v1/experiments/e1/srm/acknowledge', body: { reason: 'x' }, retried: false },
  { method: 'POST', path: '/v1/keys', body: { tenant: 't', role: 'client', name: 'n' }, retried: false },
];

describe('ApportionClient on a connection closed before any answer', () => {
  for (const c of CASES) {
    it(`${c.method} ${c.path} ${c.body === undefined ? '' : JSON.stringify(c.body)}: ${c.retried ? 'sent again, answered' : 'not sent again, thrown'}`, async () => {
      const client = new ApportionClient({ url, timeoutMs: 60_000 });
      assert.deepEqual(await client.request('GET', '/warm'), { warm: true }); // the connection the next request reuses
      const k = keyOf(c.method, c.path, c.body === undefined ? '' : JSON.stringify(c.body));
      const r = await client.request(c.method, c.path, c.body).catch((e: unknown) => e);
      if (c.retried) {
        assert.deepEqual(r, { ok: true, attempt: 2 });
        assert.equal(seen.get(k), 2);
      } else {
        assert.ok(r instanceof ApportionConnectionError, String(r));
        assert.match(r.message, /other side closed|ECONNRESET|socket hang up/);
        assert.equal(seen.get(k), 1, 'sent once');
      }
    });
  }

  it('through the methods: reportOutcome is sent again, allocate without a decisionId is not', async () => {
    const client = new ApportionClient({ url, timeoutMs: 60_000 });
    await client.request('GET', '/warm');
    assert.deepEqual(await client.reportOutcome({ decisionId: 'mabc123-0000000000000002', quality: 0.5 }), { ok: true, attempt: 2 });
    await client.request('GET', '/warm');
    const e = await client.allocate({ pipeline: 'only-once' }).catch((x: unknown) => x);
    assert.ok(e instanceof ApportionConnectionError, String(e));
    assert.equal(seen.get(keyOf('POST', '/v1/allocations', JSON.stringify({ pipeline: 'only-once' }))), 1);
  });

  it('is sent again once only: a second drop is thrown', async () => {
    const client = new ApportionClient({ url, timeoutMs: 60_000 });
    let drops = 0;
    const listener = (req: IncomingMessage) => {
      if (req.url === '/v1/experiments/twice') {
        drops++;
        req.socket.destroy();
      }
    };
    server.prependListener('request', listener);
    try {
      const e = await client.request('GET', '/v1/experiments/twice').catch((x: unknown) => x);
      assert.ok(e instanceof ApportionConnectionError, String(e));
      assert.equal(drops, 2, 'the first try and one retry');
    } finally {
      server.removeListener('request', listener);
    }
  });
});
