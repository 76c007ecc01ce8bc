import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController, SpanRecorder } from '@apportion/sdk';
import { apportionMiddleware } from '@apportion/sdk/ai';
import { budgetAgents } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, type Model, type ModelRequest, type ModelResponse, type StreamEvent } from '@openai/agents';
import { APICallError, generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * A model call that failed without usage. When the provider answered with an HTTP error status (4xx/5xx) it billed
 * nothing: the span is an error of zero tokens with `unbilledReason`, a call of $0, and the session's cost stays
 * complete. When the outcome is unknown (no status: a network error, an abort; or a status that does not tell: a
 * gateway timeout) the call stays unmetered and the session's cost incomplete.
 */
setTracingDisabled(true);
const prefix = testPrefix('sdk-unbilled');
const server = serveDuring(prefix, { PORT: '0' });

/** What the OpenAI client throws for an HTTP error status (`APIError.status`), and for a dropped connection (none). */
const openaiError = (status: number | undefined) => Object.assign(new Error(status ? `${status} status code (no body)` : 'Connection error.'), { status });
/** What the AI SDK's providers throw (`APICallError.statusCode`), and a network failure (a TypeError from fetch). */
const aiError = (status: number | undefined) =>
  status === undefined ? new TypeError('fetch failed') : new APICallError({ message: `HTTP ${status}`, url: 'https://api.example.test/v1/chat', requestBodyValues: {}, statusCode: status, isRetryable: false });

/** The status-less errors and the statuses that do not say whether the call ran stay unmetered. */
const CASES = [
  { status: 503, unbilled: 'http 503' },
  { status: 429, unbilled: 'http 429' },
  { status: 400, unbilled: 'http 400' },
  { status: 504, unbilled: undefined },
  { status: 408, unbilled: undefined },
  { status: undefined, unbilled: undefined },
] as const;

interface Tree {
  total: { calls: number; unmeteredCalls: number; unpricedCalls: number; complete: boolean; costNano: number; tokens: { total: number } };
  nodes: { kind: string; role: string; status: string; unbilledReason?: string; usage?: { input: number; output: number }; selfCostNano: number | null; priceSource: string }[];
  attempts: { failedSpans: number };
}
async function costTree(session: string): Promise<Tree> {
  const res = await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`);
  assert.equal(res.status, 200);
  return (await res.json()) as Tree;
}

/** The session holds one failed LLM call, recorded as `c` says. */
function assertRecorded(t: Tree, c: (typeof CASES)[number], what: string): void {
  const llm = t.nodes.filter((n) => n.kind === 'llm');
  assert.equal(llm.length, 1, what);
  const n = llm[0]!;
  assert.equal(n.status, 'error', what);
  if (c.unbilled) {
    assert.equal(n.role, 'leaf', what);
    assert.equal(n.unbilledReason, c.unbilled, what);
    assert.deepEqual([n.usage?.input, n.usage?.output], [0, 0], what);
    assert.equal(n.selfCostNano, 0, what);
    assert.equal(t.total.calls, 1, what);
    assert.equal(t.total.unmeteredCalls, 0, what);
    assert.equal(t.total.unpricedCalls, 0, `${what}: $0 whatever the model's price (an unknown model included)`);
    assert.equal(t.total.costNano, 0, what);
    assert.equal(t.total.complete, true, what);
  } else {
    assert.equal(n.role, 'unmetered', what);
    assert.equal(n.unbilledReason, undefined, what);
    assert.equal(n.usage, undefined, what);
    assert.equal(n.selfCostNano, null, what);
    assert.equal(t.total.unmeteredCalls, 1, what);
    assert.equal(t.total.complete, false, what);
  }
  assert.equal(t.total.tokens.total, 0, what);
  assert.ok(t.attempts.failedSpans >= 1, what);
}

const controllerFor = (agent: string) => new BudgetController({ budgets: { [agent]: { tokens: 1000 } }, unallocatedTokens: 0 }, { agents: [{ name: agent }] });

/** A Model of the Agents SDK whose every call fails with `error` (streamed: before its first event). */
class FailingModel implements Model {
  constructor(private readonly error: Error) {}
  async getResponse(_request: ModelRequest): Promise<ModelResponse> {
    throw this.error;
  }
  // eslint-disable-next-line require-yield
  async *getStreamedResponse(_request: ModelRequest): AsyncIterable<StreamEvent> {
    throw this.error;
  }
}

describe('a failed model call without usage: not billed (HTTP error status) or unmetered (outcome unknown)', () => {
  for (const stream of [false, true]) {
    it(`OpenAI Agents SDK${stream ? ', streamed' : ''}: 503, 429, 400 are errors of zero tokens and $0 with the reason; 504, 408 and a dropped connection stay unmetered`, async () => {
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const sessions: { c: (typeof CASES)[number]; session: string; controller: BudgetController }[] = [];
      for (const c of CASES) {
        const session = `unb-agents-${stream ? 's' : 'p'}-${c.status ?? 'net'}`;
        const controller = controllerFor('writer');
        const writer = new Agent({ name: 'writer', instructions: 'Write.', model: new FailingModel(openaiError(c.status)) });
        budgetAgents(writer, { controller, recorder }); // model name unknown: unpriced, yet an unbilled call is $0
        await assert.rejects(
          recorder.withSession({ sessionId: session }, async () => {
            const runner = new Runner({ tracingDisabled: true });
            if (!stream) return runner.run(writer, 'go');
            const r = await runner.run(writer, 'go', { stream: true });
            for await (const _ of r) void _;
            await r.completed;
            return r;
          }),
        );
        sessions.push({ c, session, controller });
      }
      const flushed = await recorder.close();
      assert.deepEqual(flushed.rejected, []);
      for (const { c, session, controller } of sessions) {
        assertRecorded(await costTree(session), c, `${session}`);
        assert.equal(controller.state('writer').consumed, 0);
      }
    });
  }

  for (const stream of [false, true]) {
    it(`AI SDK middleware (${stream ? 'streamText' : 'generateText'}): the provider's APICallError statusCode decides the same way`, async () => {
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const sessions: { c: (typeof CASES)[number]; session: string; controller: BudgetController }[] = [];
      for (const c of CASES) {
        const session = `unb-ai-${stream ? 's' : 'p'}-${c.status ?? 'net'}`;
        const controller = controllerFor('researcher');
        const failing = new MockLanguageModelV4({
          provider: 'openai.chat',
          modelId: 'gpt-4o-mini',
          doGenerate: async () => {
            throw aiError(c.status);
          },
          doStream: async () => {
            throw aiError(c.status);
          },
        });
        const model = wrapLanguageModel({ model: failing, middleware: apportionMiddleware({ controller, agent: 'researcher', recorder }) });
        await recorder.withSession({ sessionId: session }, async () => {
          if (!stream) {
            await assert.rejects(generateText({ model, prompt: 'go', maxRetries: 0 }));
            return;
          }
          let failed: unknown;
          const r = streamText({ model, prompt: 'go', maxRetries: 0, onError: ({ error }) => void (failed = error) });
          for await (const _ of r.fullStream) void _;
          assert.ok(failed, 'the stream failed');
        });
        sessions.push({ c, session, controller });
      }
      const flushed = await recorder.close();
      assert.deepEqual(flushed.rejected, []);
      for (const { c, session, controller } of sessions) {
        assertRecorded(await costTree(session), c, session);
        assert.equal(controller.state('researcher').consumed, 0);
      }
    });
  }

  it('the API: unbilledReason makes a call without usage one of zero tokens; with tokens or a cost it is refused', async () => {
    const t0 = Date.now() - 1000;
    const base = { traceId: 'unb-api', agent: 'a', sessionId: 'unb-api', kind: 'llm', model: 'gpt-4o', provider: 'openai', status: 'error', start: t0, end: t0 + 5 } as const;
    const res = await fetch(`${server.rt.url}/v1/spans`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        spans: [
          { ...base, spanId: 'ok', unbilledReason: 'http 503' },
          { ...base, spanId: 'zero', unbilledReason: 'http 500', usage: { input: 0, output: 0 }, costUsd: 0 },
          { ...base, spanId: 'tokens', unbilledReason: 'http 503', usage: { input: 10, output: 0 } },
          { ...base, spanId: 'cost', unbilledReason: 'http 503', costUsd: 0.01 },
        ],
      }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { accepted: number; rejected: { index: number; reason: string }[] };
    assert.equal(body.accepted, 2);
    assert.deepEqual(body.rejected.map((r) => r.index), [2, 3]);
    assert.match(body.rejected[0]!.reason, /body\/spans\/2\/usage must be zero \(or absent\) with unbilledReason/);
    assert.match(body.rejected[1]!.reason, /body\/spans\/3\/costUsd must be 0 \(or absent\) with unbilledReason/);
    const t = await costTree('unb-api');
    assert.equal(t.total.calls, 2);
    assert.equal(t.total.complete, true);
    assert.deepEqual(t.nodes.map((n) => [n.role, n.unbilledReason, n.selfCostNano]), [['leaf', 'http 503', 0], ['leaf', 'http 500', 0]]);
  });
});
