import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import { Apportion, ApportionConnectionError, ApportionHttpError, type LocalEvaluatorApi } from '@apportion/sdk';
import { compileStatic } from '@apportion/sdk/engine';
import { newDecisionId } from '../../src/allocation/decisions.js';
import type { AllocationModule } from '../../src/allocation/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { type Running } from '../../src/server.js';
import type { StrategyKind } from '../../src/strategies/types.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp, okHttp } from '../helpers/http.js';

/**
 * Local evaluation against a real server over a socket (found by an external evaluation): probe experiments are served as the server
 * serves them; a strategy kind local mode does not implement is never served under the experiment's label; decision
 * batches are cut by size (huge records neither take normal ones down with them nor block them); a slow sync answer
 * never replaces a newer one; bad sync answers are the SDK's own errors and keep the last good state.
 */
const prefix = testPrefix('localeval-ps');
let rt: Running;
let url: string;
const op = okHttp(() => url);
const http = jsonHttp(() => url);

const AGENTS = FIVE_AGENTS.agents.map((a) => a.name);
const TASKS = ['refund', 'billing', 'technical'];

/** The answer without what legitimately differs (whether the record was written). */
const strip = (a: object): Record<string, unknown> => {
  const { recorded: _r, ...rest } = a as Record<string, unknown>;
  return JSON.parse(JSON.stringify(rest, Object.keys(rest).sort())) as Record<string, unknown>;
};

/**
 * A proxy in front of the server: `hook` may answer a request itself (return true); otherwise the request is
 * forwarded and `onAnswer` may hold the upstream answer before it is passed on.
 */
interface Proxy {
  readonly url: string;
  hook: ((req: IncomingMessage, body: Buffer, res: ServerResponse) => boolean) | undefined;
  onAnswer: ((req: IncomingMessage) => Promise<void> | undefined) | undefined;
  close(): Promise<void>;
}

async function startProxy(): Promise<Proxy> {
  const p: { hook: Proxy['hook']; onAnswer: Proxy['onAnswer'] } = { hook: undefined, onAnswer: undefined };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        if (p.hook?.(req, body, res)) return;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v;
        const up = await fetch(url + req.url, { method: req.method!, headers, ...(body.length > 0 ? { body } : {}) });
        const text = Buffer.from(await up.arrayBuffer());
        await p.onAnswer?.(req);
        const out: Record<string, string> = {};
        up.headers.forEach((v, k) => {
          if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection' && k !== 'content-encoding') out[k] = v;
        });
        res.writeHead(up.status, out);
        res.end(text);
      })().catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy: Proxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get hook() {
      return p.hook;
    },
    set hook(h) {
      p.hook = h;
    },
    get onAnswer() {
      return p.onAnswer;
    },
    set onAnswer(h) {
      p.onAnswer = h;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return proxy;
}

before(async () => {
  rt = await startTest(prefix, { listen: true, workers: false }, { PORT: '0' });
  url = rt.url!;
  // A kind only this server implements (like a module's own kind): local mode does not know it.
  const madeUp: StrategyKind<Record<string, never>> = {
    kind: 'qa-made-up',
    paramsSchema: Type.Object({}),
    compile: (_p, { pipeline }) => compileStatic({ shares: { orchestrator: 5, retriever: 1, reasoner: 1, validator: 1, formatter: 1 } }, pipeline),
  };
  rt.core.kinds.register(madeUp as unknown as StrategyKind<never>);

  await op('PUT', '/v1/pipelines/ps-probe', FIVE_AGENTS);
  await op('PUT', '/v1/strategies/ps-static', { pipeline: 'ps-probe', kind: 'static', params: { shares: { orchestrator: 2, retriever: 1, reasoner: 4, validator: 1, formatter: 1 } } });
  await op('PUT', '/v1/pipelines/ps-probe', { ...FIVE_AGENTS, defaultStrategy: 'ps-static' });
  await op('PUT', '/v1/experiments/ps-probe-x', { pipeline: 'ps-probe', type: 'probe', coverage: 1, probe: { fraction: 0.5 } });
  await op('POST', '/v1/experiments/ps-probe-x/start');

  await op('PUT', '/v1/pipelines/ps-odd', FIVE_AGENTS);
  await op('PUT', '/v1/strategies/ps-odd-static', { pipeline: 'ps-odd', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 1, validator: 1, formatter: 1 } } });
  await op('PUT', '/v1/strategies/ps-odd-made', { pipeline: 'ps-odd', kind: 'qa-made-up', params: {} });
  await op('PUT', '/v1/pipelines/ps-odd', { ...FIVE_AGENTS, defaultStrategy: 'ps-odd-static' });
  await op('PUT', '/v1/experiments/ps-odd-x', {
    pipeline: 'ps-odd',
    variants: [
      { name: 'control', strategy: 'ps-odd-static', weight: 1 },
      { name: 'made', strategy: 'ps-odd-made', weight: 1 },
    ],
    control: 'control',
    coverage: 1,
  });
  await op('POST', '/v1/experiments/ps-odd-x/start');

  await op('PUT', '/v1/pipelines/ps-ship', FIVE_AGENTS);
  await op('PUT', '/v1/strategies/ps-ship-static', { pipeline: 'ps-ship', kind: 'static', params: { shares: { orchestrator: 1, retriever: 1, reasoner: 1, validator: 1, formatter: 1 } } });
  await op('PUT', '/v1/pipelines/ps-ship', { ...FIVE_AGENTS, defaultStrategy: 'ps-ship-static' });
});

after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('local evaluation against a real server', () => {
  it('serves a probe experiment as the server does: the same answers and records for the same decision ids (seeded)', async () => {
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 10_000, stream: false, flushIntervalMs: 3_600_000 });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(5501);
    const variants = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const req = {
        pipeline: 'ps-probe',
        unitKey: `u${Math.floor(rng() * 1e6)}`,
        features: { messageCount: Math.floor(rng() * 30), taskType: TASKS[Math.floor(rng() * 3)]! },
        ...(rng() < 0.3 ? { totalTokens: 8000 + Math.floor(rng() * 20000) } : {}),
        decisionId: newDecisionId(),
      };
      const server = (await op('POST', '/v1/allocations', req)) as object;
      const mine = local.allocateNow(req);
      assert.deepEqual(strip(mine), strip(server), `request ${i}`);
      if (mine.variant) variants.add(String(mine.variant));
    }
    // Every arm was drawn (the control and a cut of each agent).
    assert.deepEqual([...variants].sort(), ['control', ...AGENTS.map((a) => `cut.${a}`)].sort());
    const buffered = (local as unknown as { buffer: { id: string; reason: string; route?: { variant?: string } }[] }).buffer;
    assert.equal(buffered.length, 200);
    assert.ok(buffered.every((r) => r.reason === 'experiment'));
    await sdk.close();
  });

  it('never serves a strategy kind it does not implement under the experiment label: allocateNow refuses, allocate asks the server', async () => {
    const errors: unknown[] = [];
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 10_000, stream: false, flushIntervalMs: 3_600_000, onError: (e) => errors.push(e) });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(77);
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const req = { pipeline: 'ps-odd', unitKey: `u${Math.floor(rng() * 1e6)}`, features: { messageCount: Math.floor(rng() * 30) } };
      assert.throws(
        () => local.allocateNow(req),
        (e: unknown) => e instanceof ApportionHttpError && e.statusCode === 501 && e.code === 'LOCAL_UNSUPPORTED' && /qa-made-up/.test(e.message),
      );
      const a = await local.allocate(req);
      assert.equal(a.recorded, true);
      assert.equal(a.experiment, 'ps-odd-x');
      assert.equal(a.strategy, a.variant === 'made' ? 'ps-odd-made' : 'ps-odd-static');
      assert.equal(a.reason, 'experiment');
      seen.add(String(a.variant));
      // The server made and recorded this decision: the same answer is read back from it.
      const rec = await (rt.modules.find((m) => m.name === 'allocation') as AllocationModule).decisions.read(a.decisionId);
      assert.equal(rec?.strategy, a.strategy);
    }
    assert.deepEqual([...seen].sort(), ['control', 'made']);
    const s = local.stats();
    assert.equal(s.buffered, 0, 'nothing was logged locally');
    assert.equal(s.served, 40);
    assert.deepEqual(errors, []);
    await sdk.close();
  });

  it('cuts decision batches by size: huge records neither take the normal ones down nor block them; one too large to ship is dropped alone (seeded)', async () => {
    const errors: unknown[] = [];
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 10_000, stream: false, flushIntervalMs: 3_600_000, batchSize: 500, onError: (e) => errors.push(e) });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(4404);
    const shipped: string[] = [];
    let huge = 0;
    let enormousId = '';
    for (let i = 0; i < 260; i++) {
      const features: Record<string, string | number> = { messageCount: Math.floor(rng() * 30) };
      if (i === 130) {
        // 20 features of 1,000,000 characters: a valid local request whose record (~20 MB) can never be shipped.
        for (let k = 0; k < 20; k++) features[`doc${k}`] = String.fromCharCode(97 + k).repeat(1_000_000);
        enormousId = local.allocateNow({ pipeline: 'ps-ship', features }).decisionId;
        continue;
      }
      if (rng() < 0.13) {
        features.notes = 'x'.repeat(600_000 + Math.floor(rng() * 1000));
        huge++;
      }
      shipped.push(local.allocateNow({ pipeline: 'ps-ship', unitKey: `u${i}`, features }).decisionId);
    }
    assert.ok(huge >= 28, `huge records: ${huge}`); // over 16 MiB of them in one count-cut batch
    await eventually(async () => {
      await local.flush().catch(() => undefined);
      return local.stats().buffered === 0;
    }, 120_000);
    const s = local.stats();
    // Each record stored once: a batch whose write timed out under load is answered 503 and shipped again, and the
    // records of it that had landed then count as duplicates (one CI run: 149 shipped + 110 duplicates); every one of
    // the 259 is checked to be stored below (its outcome is accepted).
    assert.equal(s.shipped + s.duplicates, 259, JSON.stringify(s));
    assert.equal(s.rejected, 0);
    assert.equal(s.oversized, 1);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ApportionHttpError && errors[0].code === 'RECORD_TOO_LARGE' && errors[0].message.includes(enormousId), String(errors[0]));
    // Every other record's outcome joins it.
    for (const id of shipped) assert.deepEqual(await op('POST', '/v1/outcomes', { decisionId: id, quality: 0.5 }), { accepted: true, decisionId: id });
    // The dropped one is not stored (its outcome is refused: pending, as it is recent, or not found).
    const lost = await http('POST', '/v1/outcomes', { decisionId: enormousId, quality: 0.5 });
    assert.ok(lost.status === 503 || lost.status === 404, `${lost.status}`);
    await sdk.close();
  });

  it('a record the server keeps cutting off (connection closed) is dropped alone once the records after it ship; it blocks nothing', async () => {
    const proxy = await startProxy();
    try {
      // The batch route closes the connection on any batch holding the poisoned record.
      proxy.hook = (req, body, res) => {
        if (req.url === '/v1/decisions/batch' && body.includes('POISON-PILL')) {
          res.destroy();
          return true;
        }
        return false;
      };
      const errors: unknown[] = [];
      const sdk = new Apportion({ url: proxy.url, mode: 'local', maxBuffer: 10_000, stream: false, flushIntervalMs: 3_600_000, batchSize: 500, onError: (e) => errors.push(e) });
      await sdk.ready();
      const local = await sdk.evaluator();
      const rng = mulberry32(913);
      const ids: string[] = [];
      let poison = '';
      for (let i = 0; i < 60; i++) {
        const features = { messageCount: Math.floor(rng() * 30), ...(i === 17 ? { notes: 'POISON-PILL' } : {}) };
        const id = local.allocateNow({ pipeline: 'ps-ship', unitKey: `p${i}`, features }).decisionId;
        if (i === 17) poison = id;
        else ids.push(id);
      }
      await eventually(async () => {
        await local.flush().catch(() => undefined);
        return local.stats().buffered === 0;
      }, 120_000);
      const s = local.stats();
      assert.equal(s.shipped, 59);
      assert.equal(s.oversized, 1);
      assert.ok(errors.some((e) => e instanceof ApportionConnectionError && e.message.includes(poison)), 'the dropped record was reported');
      for (const id of ids) assert.deepEqual(await op('POST', '/v1/outcomes', { decisionId: id, quality: 0.5 }), { accepted: true, decisionId: id });
      await sdk.close();
    } finally {
      await proxy.close();
    }
  });

  it('never steps back to an older state: a slow sync answer overtaken by a newer one is dropped', async () => {
    const proxy = await startProxy();
    try {
      const shares = (o: number) => ({ pipeline: 'ps-ship', kind: 'static', params: { shares: { orchestrator: o, retriever: 1, reasoner: 1, validator: 1, formatter: 1 } } });
      await op('PUT', '/v1/strategies/ps-ship-static', shares(1));
      const sdk = new Apportion({ url: proxy.url, mode: 'local', stream: false, pollMs: 3_600_000, flushIntervalMs: 3_600_000 });
      await sdk.ready();
      const local = await sdk.evaluator();
      await op('PUT', '/v1/strategies/ps-ship-static', shares(2));
      // The next sync answer is held once the proxy has it (the state with shares 2).
      let fetched!: () => void;
      const upstreamDone = new Promise<void>((r) => (fetched = r));
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      proxy.onAnswer = (req) => {
        if (!req.url?.startsWith('/v1/sync')) return undefined;
        proxy.onAnswer = undefined;
        fetched();
        return released;
      };
      const slow = local.sync();
      await upstreamDone;
      await op('PUT', '/v1/strategies/ps-ship-static', shares(3));
      await local.sync();
      const newest = local.stats().version;
      const want = (await op('POST', '/v1/allocations', { pipeline: 'ps-ship', totalTokens: 10000 })) as { budgets: unknown; strategyVersion: number };
      const before = local.allocateNow({ pipeline: 'ps-ship', totalTokens: 10000 });
      assert.deepEqual(before.budgets, want.budgets);
      release();
      await slow;
      assert.equal(local.stats().version, newest, 'kept the newest state');
      const after = local.allocateNow({ pipeline: 'ps-ship', totalTokens: 10000 });
      assert.equal(after.strategyVersion, want.strategyVersion);
      assert.deepEqual(after.budgets, want.budgets);
      await sdk.close();
    } finally {
      await proxy.close();
    }
  });

  it('bad sync answers are INVALID_RESPONSE / ApportionConnectionError, and the last good state is kept', async () => {
    const proxy = await startProxy();
    try {
      const sdk = new Apportion({ url: proxy.url, mode: 'local', stream: false, pollMs: 3_600_000, flushIntervalMs: 3_600_000 });
      await sdk.ready();
      const local: LocalEvaluatorApi = await sdk.evaluator();
      const version = local.stats().version;
      const good = JSON.stringify(local.allocateNow({ pipeline: 'ps-ship', totalTokens: 10000 }).budgets);
      const json = (body: string) => (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
        res.end(body);
      };
      const modes: Record<string, [(res: ServerResponse) => void, (e: unknown) => boolean]> = {
        html: [
          (res) => {
            res.writeHead(200, { 'content-type': 'text/html' });
            res.end('<html><body>down for maintenance</body></html>');
          },
          (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE' && e.statusCode === 502,
        ],
        truncated: [
          (res) => {
            const body = JSON.stringify({ version: 1, settings: { rewardWindowSeconds: 60 }, state: { version: 1, kinds: { pipelines: [], strategies: [] } }, pad: 'y'.repeat(5000) });
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
            res.write(body.slice(0, body.length >> 1));
            setTimeout(() => res.destroy(), 50);
          },
          (e) => e instanceof ApportionConnectionError,
        ],
        truncatedChunked: [json('{"version": 3, "settings": {"rewardWin'), (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE'],
        empty: [json(''), (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE'],
        emptyObject: [json('{}'), (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE'],
        noState: [json(JSON.stringify({ version: 99, settings: { rewardWindowSeconds: 60 } })), (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE'],
        nullKinds: [json(JSON.stringify({ version: 99, settings: { rewardWindowSeconds: 60 }, state: { version: 99, kinds: {} } })), (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE'],
        badDoc: [
          json(JSON.stringify({ version: 99, settings: { rewardWindowSeconds: 60 }, state: { version: 99, kinds: { pipelines: [null], strategies: [] } } })),
          (e) => e instanceof ApportionHttpError && e.code === 'INVALID_RESPONSE',
        ],
      };
      for (const [name, [answer, expected]] of Object.entries(modes)) {
        proxy.hook = (req, _body, res) => {
          if (!req.url?.startsWith('/v1/sync')) return false;
          answer(res);
          return true;
        };
        await assert.rejects(local.sync(), (e: unknown) => {
          assert.ok(expected(e), `${name}: ${String(e)}`);
          return true;
        });
        assert.equal(local.stats().version, version, name);
        assert.equal(JSON.stringify(local.allocateNow({ pipeline: 'ps-ship', totalTokens: 10000 }).budgets), good, name);
      }
      proxy.hook = undefined;
      await local.sync();
      await sdk.close();
    } finally {
      await proxy.close();
    }
  });
});
