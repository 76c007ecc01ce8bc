import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpanRecorder } from '@apportion/sdk';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * A SpanRecorder whose batch is larger than the API's body limit (413 BODY_TOO_LARGE): the batch is halved until it
 * fits, never retried whole forever; a single span over the limit is dropped alone, reported and counted, so it does
 * not hold back the spans after it. Before, the batch went back to the head of the buffer on every 413: no span of
 * it nor any later one ever reached the server, and every flush and close() threw. Against a real server over a
 * socket, with a 64 KiB body limit.
 */
const prefix = testPrefix('sdk-span-body');
const server = serveDuring(prefix, { PORT: '0', APPORTION_BODY_LIMIT_BYTES: String(64 * 1024) });

async function tree(session: string): Promise<{ total: { calls: number; tokens: { input: number; output: number } }; nodes: unknown[] }> {
  const res = await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`);
  assert.equal(res.status, 200, `the session ${session} has spans`);
  return (await res.json()) as never;
}

describe('SpanRecorder and the API body limit', () => {
  it('a batch over the limit is halved until it fits: every span arrives once', async () => {
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, batchSize: 2000, timeoutMs: 60_000 });
    await recorder.withSession({ sessionId: 'body-halved' }, () =>
      recorder.withAgent('researcher', async () => {
        for (let i = 0; i < 1000; i++) recorder.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 10 + i, output: 1 } });
      }),
    );
    const result = await recorder.close();
    assert.deepEqual({ sent: result.sent, accepted: result.accepted, duplicates: result.duplicates, rejected: result.rejected }, { sent: 1001, accepted: 1001, duplicates: 0, rejected: [] });
    assert.equal(recorder.oversized, 0);
    const t = await tree('body-halved');
    assert.equal(t.nodes.length, 1001);
    assert.equal(t.total.calls, 1000);
    assert.equal(t.total.tokens.input, 1000 * 10 + (999 * 1000) / 2);
  });

  it('a span over the limit by itself is dropped, reported and counted; the spans around it arrive', async () => {
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    let big = '';
    await recorder.withSession({ sessionId: 'body-oversized' }, () =>
      recorder.withAgent('writer', async () => {
        recorder.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 100, output: 10 } });
        const span = recorder.recordCall({ model: 'gpt-4o-mini', provider: 'openai', name: 'x'.repeat(100 * 1024), usage: { input: 5, output: 5 } });
        big = span.spanId;
        recorder.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 200, output: 20 } });
      }),
    );
    const result = await recorder.close();
    assert.equal(result.sent, 4);
    assert.equal(result.accepted, 3);
    assert.equal(result.rejected.length, 1);
    assert.equal(result.rejected[0]!.index, 1, 'the index of the span in the flush');
    assert.match(result.rejected[0]!.reason, new RegExp(`${big}.*413 BODY_TOO_LARGE`));
    assert.equal(recorder.oversized, 1);
    assert.deepEqual(await recorder.flush(), { sent: 0, accepted: 0, duplicates: 0, rejected: [] }, 'nothing is left to retry');
    const t = await tree('body-oversized');
    assert.equal(t.nodes.length, 3, 'the two calls and the agent span');
    assert.deepEqual(t.total.tokens, { ...t.total.tokens, input: 300, output: 30 });
  });
});
