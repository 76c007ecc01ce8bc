/**
 * Shutdown over real sockets with keep-alive clients: clients sending one request after another on kept-alive
 * connections while the server starts to drain never meet a reset or a refused connection. Every request is answered:
 * 200 before the drain, 503 SHUTTING_DOWN with `Connection: close` once it began (during APPORTION_DRAIN_GRACE_MS the
 * kept-alive connections stay open for exactly that answer). Closing idle connections at once raced the clients' next
 * write: ECONNRESET on a POST the client could not tell was taken.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, describe, it } from 'node:test';
import { dropPrefix, startTest, testPrefix, within } from '../helpers/env.js';

const prefix = testPrefix('drain-keepalive');
after(() => dropPrefix(prefix));

type Answer = { status: number; connection: string | undefined; code?: string } | { error: string };

/** One GET over `agent` (kept alive). */
function get(agent: Agent, url: URL, path: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ agent, host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { code?: string }).code;
        } catch {
          code = undefined;
        }
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, ...(code !== undefined ? { code } : {}) });
      });
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

describe('drain with keep-alive clients', () => {
  it('requests written on kept-alive connections as the drain begins get 503 SHUTTING_DOWN with Connection: close, never a reset', async () => {
    const server = await startTest(prefix, { workers: false, listen: true }, { APPORTION_DRAIN_GRACE_MS: '10000' });
    const url = new URL(server.url!);
    const CLIENTS = 4;
    const agents = Array.from({ length: CLIENTS }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    let closing: Promise<void> | undefined;
    let sent = 0;
    // Each client sends sequentially on its kept-alive connection until it is told the server is shutting down (or
    // fails); the drain starts once every client is running.
    const client = async (agent: Agent): Promise<Answer[]> => {
      const answers: Answer[] = [];
      for (;;) {
        const a = await get(agent, url, '/v1/pipelines');
        answers.push(a);
        if (++sent === CLIENTS * 20) closing = server.close();
        if ('error' in a || a.status !== 200) return answers;
      }
    };
    try {
      const all = await within(Promise.all(agents.map(client)), 60_000, 'the clients');
      await within(closing!, 30_000, 'the drain');
      for (const [i, answers] of all.entries()) {
        const last = answers.at(-1)!;
        assert.ok(!('error' in last), `client ${i}: the request after ${answers.length - 1} answers met ${'error' in last ? last.error : ''} instead of an answer`);
        assert.equal(last.status, 503, `client ${i}`);
        assert.equal(last.code, 'SHUTTING_DOWN');
        assert.equal(last.connection, 'close');
        assert.ok(answers.slice(0, -1).every((a) => 'status' in a && a.status === 200));
      }
    } finally {
      for (const a of agents) a.destroy();
      await server.close();
    }
  });
});
