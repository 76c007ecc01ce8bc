import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApportionClient, ApportionHttpError, SpanRecorder } from '@apportion/sdk';
import { FIVE_AGENTS, testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('sdk-spans');
const server = serveDuring(prefix, { PORT: '0' });
const run = promisify(execFile);

/**
 * Runs an ES module program in a plain `node` process of its own (resolving '@apportion/sdk' from the repo); one
 * still running after 30 s (a bound for a hang, not a timing) is killed and fails the test.
 */
const node = (code: string, env: Record<string, string>) =>
  run(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 30_000 }).catch((e: { killed?: boolean }) => {
    throw e.killed ? new Error('the script did not exit in 30 s: something kept it alive') : e;
  });

async function costTree(session: string) {
  const res = await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`);
  return res.status === 404 ? undefined : ((await res.json()) as { total: { calls: number; tokens: { input: number } }; nodes: { agent: string; kind: string }[] });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

const RECORDING = (url: string, interval: string) => `
import { SpanRecorder } from '@apportion/sdk';
const spans = new SpanRecorder({ url: ${JSON.stringify(url)}, flushIntervalMs: ${interval} });
await spans.withSession({ sessionId: process.env.SESSION }, () =>
  spans.withAgent('researcher', async () => { spans.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 800, output: 200 } }); }));
console.log('done'); // no close(): the process ends with its spans buffered
`;

describe('SpanRecorder at process exit', () => {
  for (const interval of ['1000', '0']) {
    it(`a script that ends without close() still sends what it buffered (flushIntervalMs ${interval})`, async () => {
      const session = `exit-flush-${interval}`;
      const { stdout } = await node(RECORDING(server.rt.url!, interval), { SESSION: session });
      assert.equal(stdout.trim(), 'done');
      const tree = await costTree(session);
      assert.ok(tree, 'the session reached the server');
      assert.equal(tree.total.calls, 1);
      assert.equal(tree.total.tokens.input, 800);
      assert.deepEqual(tree.nodes.map((n) => `${n.agent} ${n.kind}`).sort(), ['researcher agent', 'researcher llm']);
    });
  }

  it('does not keep the process alive when the API is unreachable: one try at exit, then it exits', async () => {
    const port = await closedPort();
    const { stdout } = await node(RECORDING(`http://127.0.0.1:${port}`, '1000'), { SESSION: 'unreachable' });
    assert.equal(stdout.trim(), 'done', 'exited normally (exit code 0) after the failed flush');
  });

  it('holds the exit hook only while spans are buffered: one listener for every recorder, none once flushed', async () => {
    const base = process.listenerCount('beforeExit');
    const recorders = Array.from({ length: 12 }, () => new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 }));
    for (const r of recorders) r.recordCall({ model: 'gpt-4o-mini', usage: { input: 1, output: 1 } });
    assert.equal(process.listenerCount('beforeExit'), base + 1, 'one listener, not one per recorder (no MaxListenersExceededWarning)');
    for (const r of recorders.slice(1)) await r.close();
    assert.equal(process.listenerCount('beforeExit'), base + 1, 'one recorder still holds a span');
    await recorders[0]!.flush();
    assert.equal(process.listenerCount('beforeExit'), base, 'nothing buffered: no listener left');
  });
});

describe('SpanRecorder.usageFor: the usage an outcome accepts', () => {
  it('given the allocation, keeps only the agents its budgets name; given the id, every agent', async () => {
    const url = server.rt.url!;
    const client = new ApportionClient({ url, timeoutMs: 60_000 });
    await client.request('PUT', '/v1/pipelines/usage', FIVE_AGENTS);
    const spans = new SpanRecorder({ url, flushIntervalMs: 0, timeoutMs: 60_000 });
    const session = async (decisionId: string) =>
      spans.withSession({ sessionId: `usage-${decisionId}`, decisionId }, () =>
        spans.withAgent('coordinator', async () => {
          // The orchestration runs outside the pipeline's agents; its sub-agents are the pipeline's.
          spans.recordCall({ model: 'gpt-4o', usage: { input: 1200, output: 300 } });
          await Promise.all([
            spans.withAgent('retriever', () => spans.recordCall({ model: 'gpt-4o-mini', usage: { input: 800, output: 200 } })),
            spans.withAgent('reasoner', () => spans.recordCall({ model: 'gpt-4o-mini', usage: { input: 500, output: 400 } })),
          ]);
        }),
      );

    const alloc = await client.allocate({ pipeline: 'usage' });
    await session(alloc.decisionId);
    const usage = spans.usageFor(alloc);
    assert.deepEqual(usage, { retriever: { inputTokens: 800, outputTokens: 200 }, reasoner: { inputTokens: 500, outputTokens: 400 } });
    assert.deepEqual(await client.reportOutcome({ decisionId: alloc.decisionId, quality: 0.9, usage }), { accepted: true, decisionId: alloc.decisionId });
    assert.deepEqual(spans.usageFor(alloc), {}, 'forgotten once taken');

    // The decision id alone: every agent, the coordinator included, which the server refuses.
    const other = await client.allocate({ pipeline: 'usage' });
    await session(other.decisionId);
    const all = spans.usageFor(other.decisionId);
    assert.deepEqual(Object.keys(all).sort(), ['coordinator', 'reasoner', 'retriever']);
    await assert.rejects(client.reportOutcome({ decisionId: other.decisionId, quality: 0.9, usage: all }), (e) => e instanceof ApportionHttpError && e.code === 'UNKNOWN_AGENT');

    await spans.close();
    const tree = await costTree(`usage-${alloc.decisionId}`);
    assert.ok(tree?.nodes.some((n) => n.agent === 'coordinator' && n.kind === 'llm'), 'the coordinator’s call stays in the cost tree');
  });
});
