import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApportionClient, ApportionHttpError } from '@apportion/sdk';
import { newDecisionId } from '../../src/allocation/decisions.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * The SDK client's `reportOutcome` retries `503 DECISION_PENDING` (an outcome for a decision seconds old whose record
 * is not readable yet — an allocation answered `recorded: false` on a loaded store, its record landing later) until
 * the record lands, and throws what the server says once it will not: a real server over a socket, real Redis. The
 * late record is made by reporting the outcome first and allocating under the same client-chosen decision id after
 * the first 503 was seen; nothing is timed. Checked to fail: with the retry removed from `reportOutcome`, the first
 * test throws DECISION_PENDING.
 */
const prefix = testPrefix('sdk-outcome-retry');
let rt: Running;

describe('ApportionClient.reportOutcome and DECISION_PENDING', () => {
  before(async () => {
    // A wide pending window (2 × command timeout + 1 s), so a loaded machine cannot push the allocation below past it.
    rt = await startTest(prefix, { listen: true, workers: false }, { APPORTION_REDIS_COMMAND_TIMEOUT_MS: '10000' });
    await new ApportionClient({ url: rt.url! }).request('PUT', '/v1/pipelines/retry', FIVE_AGENTS);
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
  });

  it('retries while the record is in flight and is accepted once it lands', async () => {
    const client = new ApportionClient({ url: rt.url!, pendingRetryMs: 30_000 });
    const id = newDecisionId();
    // The server answers 503 for this id until its record exists.
    const first = await client.request('POST', '/v1/outcomes', { decisionId: id, quality: 0.7 }).catch((e: unknown) => e);
    assert.ok(first instanceof ApportionHttpError && first.statusCode === 503 && first.code === 'DECISION_PENDING', `first answer ${String(first)}`);
    const reported = client.reportOutcome({ decisionId: id, quality: 0.7 });
    await client.request('POST', '/v1/allocations', { pipeline: 'retry', totalTokens: 10_000, decisionId: id });
    const r = await reported;
    assert.equal(r.accepted, true);
    assert.equal(r.decisionId, id);
  });

  it('gives up after pendingRetryMs and throws the server’s DECISION_PENDING', async () => {
    const client = new ApportionClient({ url: rt.url!, pendingRetryMs: 200 });
    const e = await client.reportOutcome({ decisionId: newDecisionId(), quality: 0.5 }).catch((x: unknown) => x);
    assert.ok(e instanceof ApportionHttpError && e.code === 'DECISION_PENDING', String(e));
  });

  it('does not retry other errors: an unknown decision long past its window is 404 at once', async () => {
    const client = new ApportionClient({ url: rt.url!, pendingRetryMs: 30_000 });
    const e = await client.reportOutcome({ decisionId: newDecisionId(Date.now() - 3_600_000), quality: 0.5 }).catch((x: unknown) => x);
    assert.ok(e instanceof ApportionHttpError && e.statusCode === 404 && e.code === 'DECISION_NOT_FOUND', String(e));
  });
});

/**
 * `reportOutcome` retries `503 OUTCOME_UNCONFIRMED` (the outcome may have been accepted; the same report again is
 * queued again and counted once) and the outcome is counted once. A real server over a socket, real Redis, and in front of it an HTTP
 * pass-through in this file that forwards the first report to the server (which accepts it) and answers the client
 * 503 OUTCOME_UNCONFIRMED, as a server does whose enqueue landed after its command timed out. Checked to fail: with
 * reportOutcome retrying DECISION_PENDING only, it throws OUTCOME_UNCONFIRMED.
 */
describe('ApportionClient.reportOutcome and OUTCOME_UNCONFIRMED', () => {
  const p2 = testPrefix('sdk-outcome-unconfirmed');
  let server: Running;
  before(async () => {
    server = await startTest(p2, { listen: true });
    await new ApportionClient({ url: server.url! }).request('PUT', '/v1/pipelines/unc', FIVE_AGENTS);
  });
  after(async () => {
    await server.close();
    await dropPrefix(p2);
  });

  it('retries, and the outcome is counted once', async () => {
    let lost = 0;
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          const up = await fetch(`${server.url!}${req.url}`, { method: req.method!, headers: { 'content-type': 'application/json' }, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
          const text = await up.text();
          if (req.url === '/v1/outcomes' && lost++ === 0) {
            assert.equal(up.status, 202, text);
            res.writeHead(503, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ statusCode: 503, code: 'OUTCOME_UNCONFIRMED', error: 'Service Unavailable', message: 'The outcome may have been accepted, but it was not confirmed. Retry: the same report is queued again and counted once.' }));
            return;
          }
          res.writeHead(up.status, { 'content-type': 'application/json' });
          res.end(text);
        })();
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const client = new ApportionClient({ url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, pendingRetryMs: 30_000 });
      const a = (await client.request('POST', '/v1/allocations', { pipeline: 'unc' })) as { decisionId: string; strategy: string };
      const r = await client.reportOutcome({ decisionId: a.decisionId, quality: 0.4 });
      assert.equal(r.accepted, true);
      assert.equal(lost, 2, 'answered 503 once, then retried');
      const stats = () => server.core.redis.hget(server.core.keys.pipeline('unc', 'stats', 'strategy', a.strategy), 'n');
      await eventually(async () => (await stats()) === '1');
      // Both jobs ran (the second absorbed by the applied-marker): still one.
      const q = server.modules.find((m) => m.name === 'feedback')!.queues![0]!;
      await eventually(async () => {
        const c = await q.getJobCounts('wait', 'active', 'delayed');
        return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
      });
      assert.equal(await stats(), '1');
    } finally {
      proxy.close();
    }
  });
});
