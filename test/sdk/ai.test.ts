import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController, BudgetExceededError, SpanRecorder } from '@apportion/sdk';
import { apportionMiddleware, WRAP_UP_MESSAGE } from '@apportion/sdk/ai';
import { generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import fc from 'fast-check';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

const prefix = testPrefix('sdk-ai');
const server = serveDuring(prefix, { PORT: '0' });

const usage = (input: number, output: number) => ({
  inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: undefined },
});
const STOP = { unified: 'stop', raw: 'stop' } as const;
type Part = Awaited<ReturnType<MockLanguageModelV4['doStream']>>['stream'] extends ReadableStream<infer P> ? P : never;

/** The AI SDK's own mock model answering each call with the next usage of the script. */
function mockModel(script: readonly { input: number; output: number }[]) {
  let i = 0;
  const next = () => script[Math.min(i++, script.length - 1)]!;
  return new MockLanguageModelV4({
    provider: 'openai.chat',
    modelId: 'gpt-4o-mini',
    doGenerate: async () => {
      const u = next();
      return { content: [{ type: 'text', text: `answer ${i}` }], finishReason: STOP, usage: usage(u.input, u.output), warnings: [] };
    },
    doStream: async () => {
      const u = next();
      const parts: Part[] = [
        { type: 'stream-start', warnings: [] },
        { type: 'text-start', id: 't' },
        ...['streamed ', 'answer'].map((delta): Part => ({ type: 'text-delta', id: 't', delta })),
        { type: 'text-end', id: 't' },
        { type: 'finish', finishReason: STOP, usage: usage(u.input, u.output) },
      ];
      return { stream: new ReadableStream({ start: (c) => (parts.forEach((p) => c.enqueue(p)), c.close()) }) };
    },
  });
}

const controllerFor = (budgets: Record<string, number>, pool = 0) =>
  new BudgetController({ budgets: Object.fromEntries(Object.entries(budgets).map(([k, v]) => [k, { tokens: v }])), unallocatedTokens: pool }, { agents: Object.keys(budgets).map((name) => ({ name })) });

async function costTree(session: string) {
  return (await (await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`)).json()) as {
    total: { calls: number; tokens: { input: number; output: number } };
    nodes: { agent: string; kind: string; status: string; model?: string; provider?: string; parentSpanId?: string; spanId: string }[];
  };
}

/** A provider stream's first parts: it has started and sent some text (what a stream cut short has delivered). */
function beginText(c: ReadableStreamDefaultController<Part>): void {
  c.enqueue({ type: 'stream-start', warnings: [] });
  c.enqueue({ type: 'text-start', id: 't' });
  c.enqueue({ type: 'text-delta', id: 't', delta: 'partial ' });
}

describe('Vercel AI SDK middleware (wrapLanguageModel + the SDK’s MockLanguageModelV4)', () => {
  it('generateText: the budget is the output limit, usage goes to the controller, wrap-up near the limit, spans over a socket', async () => {
    const controller = controllerFor({ researcher: 1000, writer: 500 });
    const mock = mockModel([
      { input: 300, output: 350 },
      { input: 100, output: 120 },
    ]);
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'researcher', recorder }) });
    await recorder.withSession({ sessionId: 'ai-generate' }, async () => {
      const first = await generateText({ model, system: 'You research.', prompt: 'q1', maxOutputTokens: 5000 });
      assert.equal(first.text, 'answer 1');
      assert.equal(mock.doGenerateCalls[0]!.maxOutputTokens, 1000, 'capped at what the agent has left');
      assert.equal(controller.state('researcher').consumed, 650);
      assert.equal(controller.state('writer').consumed, 0);
      assert.ok(!JSON.stringify(mock.doGenerateCalls[0]!.prompt).includes(WRAP_UP_MESSAGE));
      // 650 of 1000 is below wrapUpAt (0.9): no wrap-up yet; a third call would be.
      await generateText({ model, system: 'You research.', prompt: 'q2', maxOutputTokens: 200 });
      assert.equal(mock.doGenerateCalls[1]!.maxOutputTokens, 200, 'a lower limit of the caller is kept');
      assert.equal(controller.state('researcher').consumed, 870);
      assert.equal(controller.shouldWrapUp('researcher'), false);
    });
    const flushed = await recorder.close();
    assert.equal(flushed.accepted, 4, 'two llm spans, each under an agent span the middleware opened (no withAgent around the calls)');
    const tree = await costTree('ai-generate');
    assert.equal(tree.total.calls, 2);
    assert.deepEqual(tree.total.tokens, { ...tree.total.tokens, input: 400, output: 470 });
    const llm = tree.nodes.filter((n) => n.kind === 'llm');
    assert.deepEqual(new Set(llm.map((n) => `${n.agent} ${n.provider} ${n.model}`)), new Set(['researcher openai gpt-4o-mini']));
  });

  it('asks to wrap up past wrapUpAt, and refuses a call with nothing left without calling the model', async () => {
    const controller = controllerFor({ planner: 1000 });
    const mock = mockModel([{ input: 500, output: 420 }, { input: 50, output: 30 }]);
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'planner', recorder }) });
    await recorder.withAgent('planner', async () => {
      await generateText({ model, system: 'Plan.', prompt: 'p' });
      assert.equal(controller.shouldWrapUp('planner'), true, '920 of 1000');
      await generateText({ model, system: 'Plan.', prompt: 'p' });
      const prompt = mock.doGenerateCalls[1]!.prompt;
      assert.deepEqual(prompt.slice(0, 2), [{ role: 'system', content: 'Plan.' }, { role: 'system', content: WRAP_UP_MESSAGE }], 'after the leading system messages');
      assert.equal(mock.doGenerateCalls[1]!.maxOutputTokens, 80);
      assert.equal(controller.available('planner'), 0);
      await assert.rejects(generateText({ model, prompt: 'again' }), (e) => e instanceof BudgetExceededError && e.agent === 'planner');
      assert.equal(mock.doGenerateCalls.length, 2, 'the model was not called');
    });
    await recorder.close();
  });

  it('streamText: streamed usage reaches the controller and the span', async () => {
    const controller = controllerFor({ writer: 2000 });
    const mock = mockModel([{ input: 700, output: 240 }]);
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'writer', recorder, provider: 'acme' }) });
    await recorder.withSession({ sessionId: 'ai-stream' }, async () => {
      const result = streamText({ model, prompt: 'write', maxOutputTokens: 1500 });
      assert.equal(await result.text, 'streamed answer');
      assert.equal((await result.usage).outputTokens, 240);
    });
    assert.equal(mock.doStreamCalls[0]!.maxOutputTokens, 1500);
    assert.equal(controller.state('writer').consumed, 940);
    assert.equal((await recorder.close()).accepted, 2);
    const tree = await costTree('ai-stream');
    const call = tree.nodes.find((n) => n.kind === 'llm')!;
    const agent = tree.nodes.find((n) => n.kind === 'agent')!;
    assert.equal(call.agent, 'writer');
    assert.equal(call.provider, 'acme');
    assert.equal(call.parentSpanId, agent.spanId, 'the call is the child of the writer’s agent span');
    assert.equal(tree.total.tokens.input, 700);
  });

  it('a streamed call that takes the agent past its budget ends its stream with BudgetExceededError', async () => {
    const controller = controllerFor({ writer: 300 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const model = wrapLanguageModel({ model: mockModel([{ input: 250, output: 100 }]), middleware: apportionMiddleware({ controller, agent: 'writer', recorder }) });
    const result = streamText({ model, prompt: 'x', onError: () => undefined });
    const parts: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const p of result.fullStream) parts.push(p.type);
      })(),
      BudgetExceededError,
    );
    assert.ok(parts.includes('text-delta'), 'the text arrived before the stream ended with the error');
    assert.equal(controller.state('writer').consumed, 350, 'the usage is recorded all the same');
    assert.equal((await recorder.close()).accepted, 2, 'and its spans');
  });

  it('a stream that fails mid-way records its llm span (status error) and closes the agent span, as a failing generateText does', async () => {
    const failing = new MockLanguageModelV4({
      provider: 'openai.chat',
      modelId: 'gpt-4o-mini',
      doGenerate: async () => {
        throw new Error('connection reset');
      },
      doStream: async () => ({
        stream: new ReadableStream<Part>({
          start(c) {
            beginText(c);
            setTimeout(() => c.error(new Error('connection reset')), 10); // as a dropped connection does
          },
        }),
      }),
    });
    const controller = controllerFor({ gen: 1000, str: 1000 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const wrap = (agent: string) => wrapLanguageModel({ model: failing, middleware: apportionMiddleware({ controller, agent, recorder }) });
    await recorder.withSession({ sessionId: 'ai-stream-error' }, async () => {
      await assert.rejects(generateText({ model: wrap('gen'), prompt: 'x', maxRetries: 0 }), /connection reset/);
      const result = streamText({ model: wrap('str'), prompt: 'x', maxRetries: 0, onError: () => undefined });
      const parts: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const p of result.fullStream) parts.push(p.type);
        })(),
        /connection reset/,
      );
      assert.ok(parts.includes('text-delta'), 'the text arrived before the stream failed');
    });
    assert.equal((await recorder.close()).accepted, 4, 'per call: its llm span and the agent span around it');
    const tree = await costTree('ai-stream-error');
    for (const agent of ['gen', 'str']) {
      const llm = tree.nodes.filter((n) => n.agent === agent && n.kind === 'llm');
      const span = tree.nodes.filter((n) => n.agent === agent && n.kind === 'agent');
      assert.deepEqual([llm.length, span.length], [1, 1], `${agent}: one llm span, one agent span`);
      assert.equal(llm[0]!.status, 'error', `${agent}: the call failed`);
      assert.equal(llm[0]!.parentSpanId, span[0]!.spanId, `${agent}: the call is the agent span's child`);
      assert.equal(span[0]!.status, 'error', `${agent}: the agent span the middleware opened failed with its call`);
    }
    assert.equal(controller.consumed, 0, 'no usage was reported');
  });

  it('a stream the consumer cancels is settled: cut short, an error span and the provider stream cancelled; after its finish part, ok with usage', async () => {
    let cancelled = 0;
    const endless = new MockLanguageModelV4({
      provider: 'openai.chat',
      modelId: 'gpt-4o-mini',
      doStream: async () => ({
        stream: new ReadableStream<Part>({
          start: beginText,
          cancel: () => void cancelled++,
        }),
      }),
    });
    const controller = controllerFor({ writer: 2000 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const aborted = new AbortController();
    await recorder.withSession({ sessionId: 'ai-stream-cancel' }, async () => {
      const model = wrapLanguageModel({ model: endless, middleware: apportionMiddleware({ controller, agent: 'writer', recorder }) });
      const result = streamText({ model, prompt: 'x', abortSignal: aborted.signal, onError: () => undefined });
      for await (const _ of result.textStream) aborted.abort(); // the user went away after the first text
    });
    assert.equal(cancelled, 1, 'the provider stream was cancelled');
    assert.equal((await recorder.close()).accepted, 2);
    const tree = await costTree('ai-stream-cancel');
    assert.deepEqual(tree.nodes.map((n) => `${n.agent} ${n.kind} ${n.status}`).sort(), ['writer agent error', 'writer llm error']);

    // Cancelled once the finish part was read: the call completed; its usage is recorded.
    const finishing = wrapLanguageModel({ model: mockModel([{ input: 300, output: 60 }]), middleware: apportionMiddleware({ controller, agent: 'writer', recorder }) });
    await recorder.withSession({ sessionId: 'ai-stream-cancel-late' }, async () => {
      const { stream } = await finishing.doStream({ prompt: [{ role: 'user', content: [{ type: 'text', text: 'x' }] }] });
      const reader = stream.getReader();
      for (let r = await reader.read(); !r.done && r.value.type !== 'finish'; r = await reader.read());
      await reader.cancel();
    });
    assert.equal(controller.state('writer').consumed, 360);
    await recorder.close();
    const late = await costTree('ai-stream-cancel-late');
    assert.deepEqual(late.nodes.map((n) => `${n.agent} ${n.kind} ${n.status}`).sort(), ['writer agent ok', 'writer llm ok']);
    assert.equal(late.total.tokens.input, 300);
  });

  it('parallel calls of one agent share what is left: each claims its cap until it ends, so the ceiling is not overspent', async () => {
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0 });
    const controller = controllerFor({ a: 1000, b: 1000 });
    const asks = [300, 300, undefined, 300];
    const caps: (number | undefined)[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // Settles when every call reached the model: the fourth was not refused (a broken claim), so the test fails on it
    // instead of waiting on the gate for ever.
    let allReached!: () => void;
    const everyCallReachedTheModel = new Promise<'reached the model'>((r) => (allReached = () => r('reached the model')));
    // Bounds every call, so nothing outlives the test whatever goes wrong (a safety net, not a timed assertion).
    const bound = AbortSignal.timeout(120_000);
    const mock = new MockLanguageModelV4({
      provider: 'openai.chat',
      modelId: 'gpt-4o-mini',
      doGenerate: async ({ maxOutputTokens, abortSignal }) => {
        caps.push(maxOutputTokens);
        if (caps.length === asks.length) allReached();
        // every call is in flight before any ends; an aborted call stops waiting
        await new Promise<void>((resolve, reject) => {
          void gate.then(resolve);
          abortSignal?.addEventListener('abort', () => reject(abortSignal.reason as Error), { once: true });
        });
        return { content: [{ type: 'text', text: 'x' }], finishReason: STOP, usage: usage(10, maxOutputTokens ?? 0), warnings: [] };
      },
    });
    const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'a', recorder }) });
    controller.start('a');
    const calls = asks.map((maxOutputTokens) => generateText({ model, prompt: 'hi', maxRetries: 0, abortSignal: bound, ...(maxOutputTokens ? { maxOutputTokens } : {}) }));
    try {
      // 300 + 300 + the rest (400) are claimed; the fourth finds nothing unclaimed and is refused before the model.
      const fourth = await Promise.race([calls[3]!.then(() => 'answered' as const, (e: unknown) => e), everyCallReachedTheModel]);
      assert.ok(fourth instanceof BudgetExceededError, `the fourth call was not refused: ${String(fourth)} (caps ${JSON.stringify(caps)})`);
      assert.equal(fourth.inFlight, 1000);
      assert.match(fourth.message, /held by its calls in flight/);
      assert.deepEqual(caps, [300, 300, 400]);
      assert.equal(controller.inFlight('a'), 1000);
      assert.equal(controller.available('a'), 0);
    } finally {
      release(); // whatever failed above, the calls held at the gate end
    }
    // The one recorded last takes a past 1000 (its input) and is rejected for it: only their end matters here.
    await Promise.allSettled(calls.slice(0, 3));
    assert.equal(controller.inFlight('a'), 0);
    // a's output stayed within its 1000; only the input (30) went past it, drawn from nowhere (pool 0).
    assert.equal(controller.state('a').consumed, 1030);
    assert.equal(controller.state('b').consumed, 0);
    assert.ok(controller.consumed <= controller.ceiling);
    await recorder.close();
  });

  it('a failed call gives back the output tokens it claimed', async () => {
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0 });
    const controller = controllerFor({ a: 500 });
    const mock = new MockLanguageModelV4({
      provider: 'openai.chat',
      modelId: 'gpt-4o-mini',
      doGenerate: async () => {
        throw new Error('provider down');
      },
    });
    const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'a', recorder }) });
    await assert.rejects(generateText({ model, prompt: 'hi', maxRetries: 0 }), /provider down/);
    assert.equal(controller.inFlight('a'), 0);
    assert.equal(controller.available('a'), 500);
    await recorder.close();
  });

  it('for random budgets and usages, every call is capped by what is left and every token is recorded (fast-check, seeded)', async () => {
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, batchSize: 1000, timeoutMs: 60_000 });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.record({ input: fc.integer({ min: 0, max: 800 }), output: fc.integer({ min: 0, max: 800 }), asked: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: undefined }) }), { minLength: 1, maxLength: 8 }),
        async (budget, calls) => {
          const controller = controllerFor({ a: budget }, 10_000);
          const mock = mockModel(calls);
          const model = wrapLanguageModel({ model: mock, middleware: apportionMiddleware({ controller, agent: 'a', recorder }) });
          let spent = 0;
          for (const c of calls) {
            const left = controller.available('a');
            if (left === 0) {
              await assert.rejects(generateText({ model, prompt: 'x', ...(c.asked ? { maxOutputTokens: c.asked } : {}) }), BudgetExceededError);
              break;
            }
            await generateText({ model, prompt: 'x', ...(c.asked ? { maxOutputTokens: c.asked } : {}) }).catch((e: unknown) => assert.ok(e instanceof BudgetExceededError));
            assert.equal(mock.doGenerateCalls.at(-1)!.maxOutputTokens, Math.min(c.asked ?? left, left));
            spent += c.input + c.output;
            assert.equal(controller.consumed, spent);
          }
        },
      ),
      { seed: 17, numRuns: 150 },
    );
    await recorder.close();
  });
});
