import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApportionClient, ApportionHttpError } from '@apportion/sdk';
import { newDecisionId } from '../../src/allocation/decisions.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

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
