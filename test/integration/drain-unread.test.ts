/**
 * Shutdown over real sockets: once the drain's grace has ended and the listener is closed, a connection the server
 * has accepted is not closed while a request may be on its way. A kept-alive connection left idle through the grace,
 * and a connection accepted but not yet written on, each still get an HTTP answer (503 SHUTTING_DOWN with
 * `Connection: close`) for a request written after the listener closed. Node's server.close() destroyed both at once:
 * the client's request met "other side closed" (or a reset) with no answer (an external evaluation's finding: three POSTs, among them a
 * reservation, ~4 s after a SIGTERM under load). Connections nobody writes on still close by themselves: a kept-alive
 * one at its keep-alive timeout, one that never sent a request after APPORTION_HEADERS_TIMEOUT_MS.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix, within } from '../helpers/env.js';

const prefix = testPrefix('drain-unread');
after(() => dropPrefix(prefix));

/** A raw client connection that records every byte it receives and when the server closed it. */
class Raw {
  received = '';
  closed = false;
  readonly socket: Socket;
  private readonly connecting: Promise<void>;
  constructor(port: number, host: string) {
    this.socket = connect(port, host);
    this.connecting = new Promise((r) => this.socket.once('connect', () => r()));
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => (this.received += d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
  }
  connected(): Promise<void> {
    return this.connecting;
  }
  /** The number of complete answers received so far (each body is JSON ending in `}`; Content-Length framed). */
  answers(): { status: number; connection: string | undefined; code: string | undefined }[] {
    const out: { status: number; connection: string | undefined; code: string | undefined }[] = [];
    let rest = this.received;
    for (;;) {
      const head = rest.indexOf('\r\n\r\n');
      if (head < 0) return out;
      const headers = rest.slice(0, head);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(headers)?.[1] ?? NaN);
      if (!Number.isFinite(length) || rest.length < head + 4 + length) return out;
      const body = rest.slice(head + 4, head + 4 + length);
      let code: string | undefined;
      try {
        code = (JSON.parse(body) as { code?: string }).code;
      } catch {
        code = undefined;
      }
      out.push({ status: Number(headers.slice(9, 12)), connection: /\r\nconnection: *([^\r]*)/i.exec(headers)?.[1]?.toLowerCase(), code });
      rest = rest.slice(head + 4 + length);
    }
  }
}

const GET = (host: string) => `GET /v1/pipelines HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

async function listening(env: Record<string, string>): Promise<{ server: Running; port: number; host: string; accepted: () => number }> {
  const server = await startTest(prefix, { workers: false, listen: true }, env);
  const url = new URL(server.url!);
  let n = 0;
  server.app!.server.on('connection', () => n++);
  return { server, port: Number(url.port), host: url.hostname, accepted: () => n };
}

describe('drain: connections with a request on its way after the listener closed', () => {
  it('a kept-alive connection idle through the grace, and one accepted but not yet written on, both answer 503 SHUTTING_DOWN after the listener closed', async () => {
    const { server, port, host, accepted } = await listening({ APPORTION_DRAIN_GRACE_MS: '200' });
    const kept = new Raw(port, host);
    const fresh = new Raw(port, host);
    try {
      await kept.connected();
      kept.socket.write(GET(host));
      await eventually(() => kept.answers().length === 1, 20_000);
      assert.equal(kept.answers()[0]!.status, 200);
      assert.equal(kept.answers()[0]!.connection, 'keep-alive');
      await fresh.connected();
      // Both connections are the server's (accepted, not waiting in the kernel's queue) before the drain starts.
      await eventually(() => accepted() === 2, 20_000);

      const closing = server.close();
      await eventually(() => !server.app!.server.listening, 20_000);
      // The clients write only now: the listener is closed, and neither connection had a request the server had read.
      assert.ok(!kept.closed && !fresh.closed, `the server closed ${kept.closed ? 'the kept-alive' : 'the fresh'} connection as the listener closed, before any request could be answered on it`);
      kept.socket.write(GET(host));
      fresh.socket.write(GET(host));
      await within(
        eventually(() => kept.answers().length === 2 && fresh.answers().length === 1 && kept.closed && fresh.closed, 20_000),
        30_000,
        'the answers',
      ).catch(() => undefined);
      for (const [name, a] of [['kept-alive', kept.answers()[1]], ['fresh', fresh.answers()[0]]] as const) {
        assert.ok(a, `the ${name} connection was closed without an answer (received: ${JSON.stringify(name === 'fresh' ? fresh.received : kept.received.slice(-200))})`);
        assert.equal(a.status, 503, name);
        assert.equal(a.code, 'SHUTTING_DOWN', name);
        assert.equal(a.connection, 'close', name);
      }
      await within(closing, 30_000, 'the drain');
    } finally {
      kept.socket.destroy();
      fresh.socket.destroy();
      await server.close();
    }
  });

  it('connections nobody writes on still close by themselves: a kept-alive one at its keep-alive timeout, one that never sent a request after the headers timeout', async () => {
    const { server, port, host, accepted } = await listening({ APPORTION_DRAIN_GRACE_MS: '0', APPORTION_KEEP_ALIVE_TIMEOUT_MS: '300', APPORTION_HEADERS_TIMEOUT_MS: '300' });
    const kept = new Raw(port, host);
    const fresh = new Raw(port, host);
    try {
      await kept.connected();
      kept.socket.write(GET(host));
      await eventually(() => kept.answers().length === 1, 20_000);
      await fresh.connected();
      await eventually(() => accepted() === 2, 20_000);
      // Bounds against a hang (the drain waiting on them until the 20 s limit), not latency targets.
      await within(server.close(), 15_000, 'the drain with two idle connections');
      assert.ok(kept.closed && fresh.closed);
      assert.equal(fresh.received, '', 'nothing is written on a connection that sent no request');
    } finally {
      kept.socket.destroy();
      fresh.socket.destroy();
      await server.close();
    }
  });
});
