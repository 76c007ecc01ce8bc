import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApportionClient } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('shutdown');
let rt: Running | undefined;

after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('graceful shutdown', () => {
  it('SIGTERM during a burst of outcomes: exits 0, and every accepted outcome is applied (after restart if need be)', async (t) => {
    const child = spawn(process.execPath, [...nodeEntry('src/cli/main.ts'), 'serve'], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', REDIS_URL, APPORTION_KEY_PREFIX: prefix, APPORTION_SEED_EXAMPLES: 'false', LOG_LEVEL: 'info', APPORTION_OUTCOME_CONCURRENCY: '2' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    // Whatever fails below, the child does not outlive the test (its open pipe would keep the file running).
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    // A bound, not a target: a cold `tsx` start of the whole server took over 30 s on a machine busy with other work.
    const url = await eventually(() => {
      const line = out.split('\n').find((l) => l.includes('apportion started'));
      return line ? (JSON.parse(line) as { url: string }).url : undefined;
    }, 180_000);
    const client = new ApportionClient({ url });
    await client.request('PUT', '/v1/pipelines/p', FIVE_AGENTS);
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push((await client.allocate({ pipeline: 'p' })).decisionId);
    let accepted = 0;
    const sends = ids.map((decisionId, i) =>
      client.reportOutcome({ decisionId, quality: (i % 10) / 10 }).then(
        () => accepted++,
        () => undefined, // refused while draining: not accepted, so not owed
      ),
    );
    await new Promise((r) => setTimeout(r, 20));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    await Promise.all(sends);
    assert.equal(await exited, 0);
    assert.ok(accepted > 0, 'some outcomes were accepted before the drain');

    // A fresh worker finishes whatever the stopped one left queued; every accepted outcome counts exactly once.
    rt = await startTest(prefix, { workers: true });
    const stats = await eventually(async () => {
      const s = (await rt!.app!.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json();
      return s.count >= accepted ? s : undefined;
      // A bound, not a target: on a machine kept busy by other work a fresh worker took longer than 30 s to start.
    }, 180_000);
    assert.equal(stats.count, accepted);
  });

  it('while draining, a request that reaches the app gets 503 SHUTTING_DOWN with the error body and Connection: close', async () => {
    const p2 = testPrefix('shutdown-503');
    const server = await startTest(p2, { workers: false, listen: true });
    try {
      const { hostname, port } = new URL(server.url!);
      const socket = connect(Number(port), hostname);
      await new Promise((r) => socket.once('connect', r));
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString()));
      // The request has begun over a real socket (its headers not finished) when the drain starts, so its connection
      // is not idle and stays open; its headers then complete while the server is closing.
      socket.write('GET /v1/pipelines HTTP/1.1\r\nHost: x\r\n');
      await new Promise((r) => setTimeout(r, 500));
      const closed = server.close();
      // The drain has begun once the listener is closed (the app's preClose hooks run first).
      await eventually(() => !server.app!.server.listening, 20_000);
      socket.write('\r\n');
      await eventually(() => received.trimEnd().endsWith('}'), 20_000);
      await closed;
      socket.destroy();
      assert.match(received, /^HTTP\/1\.1 503 /);
      assert.match(received, /\r\nconnection: close\r\n/i);
      const err = JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)) as { code: string; statusCode: number; message: string };
      assert.equal(err.code, 'SHUTTING_DOWN');
      assert.equal(err.statusCode, 503);
      assert.match(err.message, /shutting down/);
    } finally {
      await server.close();
      await dropPrefix(p2);
    }
  });
});
