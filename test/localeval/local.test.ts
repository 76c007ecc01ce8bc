import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import { newDecisionId } from '../../src/allocation/decisions.js';
import type { AllocationModule } from '../../src/allocation/module.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { start, type Running } from '../../src/server.js';
import { dropPrefix, eventually, silentLog, startTest, testConfig, testPrefix } from '../helpers/env.js';
import { okHttp } from '../helpers/http.js';
import { randomRequest, setUp } from './fixtures.js';

/**
 * Local evaluation against a real server over a socket: the same decision records as the server's, the event
 * stream and ETag sync, and decision shipping (outcomes join shipped decisions; a server restart loses and doubles
 * nothing). The shared test vectors are in vectors.test.ts.
 */
const prefix = testPrefix('localeval');
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let rt: Running;
let url: string;

const op = okHttp(() => url);

/** The answer without what legitimately differs (whether the record was written). */

before(async () => {
  rt = await startTest(prefix, { listen: true, workers: false }, { PORT: '0' });
  url = rt.url!;
  await setUp(op, (id, doc) => rt.core.store.put('models', id, doc));
  // The server's snapshot takes the fixture's last write (a model document put straight into the store) when its change
  // message arrives; load it now, so an SDK's first snapshot is the server's (a run once had the server answer with the
  // candidate version that SDK's snapshot did not hold yet).
  await rt.core.snapshot.refresh();
});

after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('local evaluation', () => {
  it('logs the same decision record as the server for the same decision id (learned meta, routing propensities)', async () => {
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 1000, stream: false, flushIntervalMs: 3_600_000 });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(99);
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      const req = { ...randomRequest(rng), decisionId: newDecisionId() };
      await op('POST', '/v1/allocations', req);
      await local.allocate(req);
      ids.push(req.decisionId);
    }
    const buffered = (local as unknown as { buffer: { id: string; ts: number }[] }).buffer;
    assert.equal(buffered.length, 300);
    const decisions = (rt.modules.find((m) => m.name === 'allocation') as AllocationModule).decisions;
    for (const r of buffered) {
      const server = await decisions.read(r.id);
      assert.ok(server, `server record ${r.id}`);
      // The fields that differ, named (a one-off failure here once printed only "record").
      const a = { ...r, ts: 0 } as Record<string, unknown>;
      const b = { ...server, ts: 0 } as Record<string, unknown>;
      const differ = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
      assert.deepEqual(a, b, `record ${r.id}: ${differ.map((k) => `${k}: local ${JSON.stringify(a[k])} / server ${JSON.stringify(b[k])}`).join('; ')}`);
    }
    // Shipping them now finds each id already recorded: counted as duplicates, nothing written twice.
    await sdk.flush();
    const s = (await sdk.stats())!;
    assert.equal(s.duplicates, 300);
    assert.equal(s.shipped, 0);
    await sdk.close();
  });

  it('refuses what the server refuses, with its status and code, and records nothing then (generated bad requests)', async () => {
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 1000, stream: false, flushIntervalMs: 3_600_000 });
    await sdk.ready();
    const local = await sdk.evaluator();
    const rng = mulberry32(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    // One field of a valid request made bad (or a bad feasibility), drawn from the seed.
    const breakers: ((r: Record<string, unknown>) => void)[] = [
      (r) => (r.totalTokens = pick([1e12, 0, -5, 1.5, '1000', null, Number.NaN])),
      (r) => (r.maxCostUsd = pick(['abc', null, 0, -1, 2e6, Number.POSITIVE_INFINITY])),
      (r) => (r.features = { ...(r.features as object), promptText: pick([{ a: 1 }, [1], Number.NaN]) }),
      (r) => (r.features = pick([[1, 2], 'x', 3])),
      (r) => (r[pick(['extra', 'budget', 'tenant'])] = 1),
      (r) => (r.unitKey = pick(['', 'u'.repeat(257), 42])),
      (r) => (r.pipeline = pick(['', '-bad', 'no such pipeline', 'missing-pipeline'])),
      (r) => (r.strategy = pick(['', 's'.repeat(129), 'missing-strategy', 'five-static'])),
      (r) => (r.decisionId = pick(['short', 'ABCDEFG-xxxxxxxxxx', 42])),
      (r) => (r.totalTokens = 1), // below the minimums: INFEASIBLE_TOTAL
    ];
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      const req: Record<string, unknown> = { ...randomRequest(rng), decisionId: newDecisionId() };
      pick(breakers)(req);
      // JSON carries NaN and Infinity as null: the server sees what a JSON body can say.
      const server = await fetch(`${url}/v1/allocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req) });
      const answer = (await server.json()) as Record<string, any>;
      let mine: Record<string, any>;
      try {
        mine = { statusCode: 200, ...((await local.allocate(req as never)) as unknown as Record<string, any>) };
      } catch (e) {
        const err = e as { statusCode?: number; code?: string };
        mine = { statusCode: err.statusCode, code: err.code };
      }
      const json = JSON.stringify(req);
      // NaN and Infinity reach the server as null (JSON cannot say them): local mode refuses them, as it must.
      const nonFinite = (v: unknown): boolean => (typeof v === 'number' ? !Number.isFinite(v) : typeof v === 'object' && v !== null ? Object.values(v).some(nonFinite) : false);
      if (nonFinite(req)) {
        assert.equal(mine.statusCode, 400, `${json}: a non-finite number is refused locally`);
        continue;
      }
      if (server.status === 200) {
        assert.equal(mine.statusCode, 200, `${json}: the server answered, local mode refused with ${mine.code}`);
        continue;
      }
      refused++;
      assert.equal(mine.statusCode, server.status, `${json}: server ${server.status} ${answer.code} ${answer.message}, local ${mine.statusCode} ${mine.code}`);
      assert.equal(mine.code, answer.code, json);
    }
    assert.ok(refused > 120, `${refused} requests refused`);
    const buffered = (local as unknown as { buffer: { id: string }[] }).buffer;
    for (const r of buffered) assert.ok(await (rt.modules.find((m) => m.name === 'allocation') as AllocationModule).decisions.read(r.id), `a locally recorded decision ${r.id} the server also made`);
    await sdk.close();
  });

  it('follows the event stream: a control-plane change reaches the SDK without polling; an unchanged state answers 304', async () => {
    const sdk = new Apportion({ url, mode: 'local', pollMs: 3_600_000, maxBuffer: 0 });
    await sdk.ready();
    const local = await sdk.evaluator();
    const before = local.stats().version;
    await op('PUT', '/v1/strategies/five-static', { pipeline: 'lv-five', kind: 'static', params: { shares: { orchestrator: 3, reasoner: 1 } } });
    const v = rt.core.snapshot.current().version;
    assert.ok(v > before);
    await eventually(() => local.stats().version === v);
    const a = await local.allocate({ pipeline: 'lv-five', strategy: 'five-static', totalTokens: 10000 });
    const b = (await op('POST', '/v1/allocations', { pipeline: 'lv-five', strategy: 'five-static', totalTokens: 10000 })) as { budgets: unknown; strategyVersion: number };
    assert.deepEqual(a.budgets, b.budgets);
    assert.equal(a.strategyVersion, b.strategyVersion);
    const n = local.stats().notModified;
    await local.sync();
    assert.equal(local.stats().notModified, n + 1);
    await sdk.close();
  });

  it('ships decisions in batches: outcomes join them like server-made ones; a server restart loses and doubles nothing', async () => {
    const errors: unknown[] = [];
    const sdk = new Apportion({ url, mode: 'local', stream: false, flushIntervalMs: 50, batchSize: 40, onError: (e) => errors.push(e) });
    await sdk.ready();
    const rng = mulberry32(5);
    const made: string[] = [];
    for (let i = 0; i < 100; i++) made.push((await sdk.allocate(randomRequest(rng))).decisionId);
    // An outcome right after a local allocation: its record is shipped first, so the outcome finds it.
    assert.deepEqual(errors, []);
    const fresh = await sdk.allocate({ pipeline: 'lv-learned', unitKey: 'u-out', features: { messageCount: 4 } });
    assert.deepEqual(await sdk.reportOutcome({ decisionId: fresh.decisionId, quality: 0.7 }), { accepted: true, decisionId: fresh.decisionId });
    await sdk.flush();
    await eventually(async () => (await sdk.stats())!.buffered === 0);
    assert.deepEqual(errors, []);
    const decisions = () => (rt.modules.find((m) => m.name === 'allocation') as AllocationModule).decisions;
    for (const id of made) assert.ok(await decisions().read(id), `shipped ${id}`);

    // The server goes away: decisions keep being made from the last synced state, and are buffered.
    const port = new URL(url).port;
    await rt.close();
    const during: string[] = [];
    for (let i = 0; i < 120; i++) during.push((await sdk.allocate(randomRequest(rng))).decisionId);
    await assert.rejects(sdk.flush());
    assert.equal((await sdk.stats())!.buffered, 120);
    rt = await start(testConfig(prefix, { PORT: port }), silentLog, { api: true, workers: false, listen: true });
    await eventually(async () => (await sdk.stats())!.buffered === 0, 60_000);
    for (const id of during) assert.ok(await decisions().read(id), `shipped after the restart ${id}`);
    const s = (await sdk.stats())!;
    assert.equal(s.shipped + s.duplicates, 221);
    assert.equal(s.rejected, 0);
    assert.equal(s.dropped, 0);
    // A batch retried after its answer was lost is stored once.
    const again = (await op('POST', '/v1/decisions/batch', { decisions: [await decisions().read(during[0]!)] })) as { accepted: number; duplicates: number };
    assert.deepEqual(again, { accepted: 0, duplicates: 1, rejected: [] });
    await sdk.close();
    assert.ok(errors.length > 0, 'the outage was reported');
  });

  it('refuses records it cannot store, naming the field', async () => {
    const r = await fetch(`${url}/v1/decisions/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decisions: [{ id: 'nope' }] }) });
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { message: string }).message, /body\/decisions\/0/);
    const base = { pipelineVersion: 1, strategy: '@uniform', strategyVersion: 0, strategyKind: 'uniform', reason: 'default', budgets: {}, totalTokens: 100, features: {}, ts: Date.now() };
    const out = (await op('POST', '/v1/decisions/batch', {
      decisions: [
        { ...base, id: newDecisionId(), pipeline: 'no-such-pipeline' },
        { ...base, id: newDecisionId(Date.now() - 400 * 86_400_000), pipeline: 'lv-five' },
      ],
    })) as { accepted: number; rejected: { index: number; code: string; message: string }[] };
    assert.equal(out.accepted, 0);
    assert.deepEqual(out.rejected.map((x) => [x.index, x.code]), [[0, 'PIPELINE_NOT_FOUND'], [1, 'DECISION_NOT_FOUND']]);
    const taken = (await op('POST', '/v1/allocations', { pipeline: 'lv-five' })) as { decisionId: string };
    const dup = await fetch(`${url}/v1/allocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: 'lv-five', decisionId: taken.decisionId }) });
    assert.equal(dup.status, 409);
  });

  it('a process in local mode exits on its own (the event stream does not hold it) and ships its decisions as it exits', async () => {
    const script = `import { Apportion } from '@apportion/sdk';
const sdk = new Apportion({ url: process.argv[1], mode: 'local', flushIntervalMs: 3600000 });
const ids = [];
for (let i = 0; i < 3; i++) ids.push((await sdk.allocate({ pipeline: 'lv-five', unitKey: 'exit-' + i })).decisionId);
console.log(JSON.stringify(ids));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, url], { cwd: ROOT, timeout: 120_000 });
    const ids = JSON.parse(stdout) as string[];
    assert.equal(ids.length, 3);
    const decisions = (rt.modules.find((m) => m.name === 'allocation') as AllocationModule).decisions;
    for (const id of ids) assert.ok(await decisions.read(id), `shipped on exit: ${id}`);
  });

  it('counts a text feature in a process of its own as the server does, a special token’s spelling included', async () => {
    // A fresh process: the SDK loads its own encoder (in this one the server's is already installed).
    const documentText = `${'refund order '.repeat(30)}<|endoftext|> and <|endofprompt|>`;
    const script = `import { Apportion } from '@apportion/sdk';
const sdk = new Apportion({ url: process.argv[1], mode: 'local', flushIntervalMs: 3600000 });
const a = await sdk.allocate({ pipeline: 'lv-five', strategy: 'five-estimate', features: { documentText: process.argv[2] } });
console.log(JSON.stringify(a.budgets));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, url, documentText], { cwd: ROOT, timeout: 120_000 });
    const server = (await op('POST', '/v1/allocations', { pipeline: 'lv-five', strategy: 'five-estimate', features: { documentText } })) as { budgets: unknown };
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), server.budgets);
  });
});
