import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { after, describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import type { FastifyInstance } from 'fastify';
import { start, type Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, silentLog, startTest, testConfig, testPrefix } from '../helpers/env.js';

/**
 * The sync ETag across a Redis data loss (docs/sdk.md, "Local evaluation"; docs/architecture.md, "When Redis loses its
 * data"). Every version restarts from 0 after a loss; once the operator's re-applied configuration climbs back to the
 * version an SDK holds, an ETag made of the version alone (`"v<version>-*"`, as operator keys had) named different
 * content: `If-None-Match` answered 304 and the event stream announced what the SDK already held, so it served the
 * old state for good. Data losses are simulated as the other data-loss tests do: the file's keys dropped, then the
 * generation marker checked (in process), or the server restarted on the emptied prefix.
 */
const running: Running[] = [];
const prefixes: string[] = [];

after(async () => {
  for (const r of running) await r.close().catch(() => undefined);
  for (const p of prefixes) await dropPrefix(p);
});

const shares = (orchestrator: number) => ({ orchestrator, retriever: 1, reasoner: 1, validator: 1, formatter: 1 });

async function put(app: FastifyInstance, url: string, payload: unknown): Promise<void> {
  const r = await app.inject({ method: 'PUT', url, payload: payload as Record<string, unknown> });
  assert.ok(r.statusCode < 300, `PUT ${url} → ${r.statusCode} ${r.body}`);
}

/**
 * The operator applies its configuration (pipeline `p` with the static strategy `s`, orchestrator share `o`, as its
 * default), then writes the strategy again (same content) until the global version reaches `target`.
 */
async function apply(rt: Running, o: number, target?: number): Promise<number> {
  const app = rt.app!;
  await put(app, '/v1/pipelines/p', FIVE_AGENTS);
  await put(app, '/v1/strategies/s', { pipeline: 'p', kind: 'static', params: { shares: shares(o) } });
  await put(app, '/v1/pipelines/p', { ...FIVE_AGENTS, defaultStrategy: 's' });
  while (target !== undefined && (await rt.core.store.version()) < target) await put(app, '/v1/strategies/s', { pipeline: 'p', kind: 'static', params: { shares: shares(o) } });
  const version = await rt.core.store.version();
  await eventually(() => rt.core.snapshot.current().version === version);
  return version;
}

interface Synced {
  readonly status: number;
  readonly etag: string | undefined;
  readonly version: number | undefined;
  readonly orchestrator: number | undefined;
}

async function sync(app: FastifyInstance, ifNoneMatch?: string): Promise<Synced> {
  const r = await app.inject({ method: 'GET', url: '/v1/sync', headers: ifNoneMatch ? { 'if-none-match': ifNoneMatch } : {} });
  const etag = r.headers.etag as string | undefined;
  if (r.statusCode !== 200) return { status: r.statusCode, etag, version: undefined, orchestrator: undefined };
  const body = r.json() as { version: number; state: { kinds: { strategies?: { id: string; doc: { params: { shares: Record<string, number> } } }[] } } };
  const s = body.state.kinds.strategies?.find((x) => x.id === 's');
  return { status: 200, etag, version: body.version, orchestrator: s?.doc.params.shares.orchestrator };
}

/** The events of `GET /v1/sync/stream` (operator key), collected as they come. */
async function stream(url: string, query = ''): Promise<{ events: { version: number; etag: string }[]; res: IncomingMessage }> {
  const events: { version: number; etag: string }[] = [];
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(`${url}/v1/sync/stream${query}`, { headers: { accept: 'text/event-stream' } }, resolve);
    req.on('error', reject);
    req.end();
  });
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
  return { events, res };
}

describe('the sync ETag after Redis lost its data (operator key)', () => {
  it('never repeats for different content: the version climbs back, If-None-Match of the old ETag answers 200', async () => {
    const prefix = testPrefix('sync-etag');
    prefixes.push(prefix);
    const rt = await startTest(prefix, { listen: true, workers: false });
    running.push(rt);
    const app = rt.app!;
    const n = await apply(rt, 1, 12);
    const held = await sync(app);
    assert.equal(held.status, 200);
    assert.equal(held.version, n);
    assert.equal(held.orchestrator, 1);
    assert.equal((await sync(app, held.etag)).status, 304);

    const live = await stream(rt.url!);
    try {
      await eventually(() => live.events.length === 1);
      assert.equal(live.events[0]!.etag, held.etag);

      // Redis loses the data; the server notices and reloads (versions start again from 0).
      await dropPrefix(prefix);
      await rt.core.generation.check();
      assert.ok(rt.core.snapshot.current().version < n, `reloaded: version ${rt.core.snapshot.current().version}`);
      // The reload is announced to connected SDKs, under an ETag other than the one they hold.
      await eventually(() => live.events.some((e) => e.version < n));
      assert.ok(live.events.slice(1).every((e) => e.etag !== held.etag), JSON.stringify(live.events));

      // The operator re-applies its configuration with one difference, up to the version the SDK holds.
      assert.equal(await apply(rt, 8, n), n, 'the re-applied configuration reaches the held version exactly');
      const after = await sync(app, held.etag);
      assert.equal(after.status, 200, `the held ETag ${held.etag} names different content now`);
      assert.equal(after.version, n);
      assert.equal(after.orchestrator, 8);
      assert.notEqual(after.etag, held.etag);
      assert.equal((await sync(app, after.etag)).status, 304, 'unchanged content still answers 304');
      // An SDK connecting now (its stream was down over the loss) is told of a state other than the one it holds.
      const fresh = await stream(rt.url!, '?once=true');
      await new Promise((r) => fresh.res.on('end', r));
      assert.equal(fresh.events.length, 1);
      assert.deepEqual(fresh.events[0], { version: n, etag: after.etag });
      assert.equal(live.events.at(-1)?.etag, after.etag, 'the connected stream announced the state served now');
    } finally {
      live.res.destroy();
    }
  });

  it('an SDK in local mode follows the server restarted on an emptied Redis, once its stream reconnects', async () => {
    const prefix = testPrefix('sync-etag-sdk');
    prefixes.push(prefix);
    let rt = await startTest(prefix, { listen: true, workers: false });
    running.push(rt);
    const port = new URL(rt.url!).port;
    const n = await apply(rt, 1, 12);
    const errors: unknown[] = [];
    // Only the event stream can bring the SDK a new state here (the poll is an hour away).
    const sdk = new Apportion({ url: rt.url!, mode: 'local', pollMs: 3_600_000, flushIntervalMs: 3_600_000, onError: (e) => errors.push(e) });
    try {
      await sdk.ready();
      const local = await sdk.evaluator();
      const req = { pipeline: 'p', unitKey: 'u1', features: {} };
      const before = local.allocateNow(req).budgets.orchestrator!.tokens;
      assert.equal(local.stats().version, n);

      // Redis without persistence restarts with the server: the data is gone. The operator re-applies its
      // configuration (one difference) before the server listens again, up to the version the SDK holds.
      await rt.close();
      running.splice(running.indexOf(rt), 1);
      await dropPrefix(prefix);
      const seeding = await startTest(prefix, { workers: false });
      try {
        assert.equal(await apply(seeding, 8, n), n, 'the re-applied configuration reaches the held version exactly');
      } finally {
        await seeding.close();
      }
      rt = await start(testConfig(prefix, { PORT: port }), silentLog, { api: true, workers: false, listen: true });
      running.push(rt);
      const server = await rt.app!.inject({ method: 'POST', url: '/v1/allocations', payload: req });
      assert.equal(server.statusCode, 200, server.body);
      const want = (server.json() as { budgets: { orchestrator: { tokens: number } } }).budgets.orchestrator.tokens;
      assert.notEqual(want, before, 'the re-applied configuration allocates differently');

      // The stream reconnects (backoff from 1 s) and announces the server's state: the SDK must fetch it.
      await eventually(() => local.allocateNow(req).budgets.orchestrator!.tokens === want, 60_000, 100);
      assert.equal(local.stats().version, n);
    } finally {
      await sdk.close();
    }
  });
});
