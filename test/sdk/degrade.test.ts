import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController, SpanRecorder } from '@apportion/sdk';
import { apportionMiddleware } from '@apportion/sdk/ai';
import { attachBudgetHooks, budgetAgents } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage, type Model } from '@openai/agents';
import { assistantMessage, functionCall, ScriptedModel } from '@openai/agents/testing';
import { generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * The controller's downgrade under pressure (an agent's `fallbackModel`, budgets.md "Degradation") reaches the
 * framework integrations: given the Models by name (`modelsByName`), a call of an agent the controller moved to
 * another model goes to that model, and its span names it, so the cost tree prices what ran. Before, the controller
 * reported the downgrade (`onDegrade`, `state(agent).model`) while the integration still called the agent's own model
 * and recorded it: the fallback never took effect. Against a real server over a socket.
 */
setTracingDisabled(true);
const prefix = testPrefix('sdk-degrade');
type Part = Awaited<ReturnType<MockLanguageModelV4['doStream']>>['stream'] extends ReadableStream<infer P> ? P : never;
const server = serveDuring(prefix, { PORT: '0' });

async function llmNodes(session: string): Promise<{ agent: string; model: string | undefined; selfCostNano: number }[]> {
  const tree = (await (await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`)).json()) as { nodes: { agent: string; kind: string; model?: string; selfCostNano: number }[] };
  return tree.nodes.filter((n) => n.kind === 'llm').map(({ agent, model, selfCostNano }) => ({ agent, model, selfCostNano }));
}

/** triage (critical) and billing, which falls back from gpt-4o to gpt-4o-mini; 2000 tokens in all. */
const controllerFor = (onDegrade: (d: unknown) => void) =>
  new BudgetController(
    { budgets: { triage: { tokens: 1900 }, billing: { tokens: 100 } }, unallocatedTokens: 0 },
    { agents: [{ name: 'triage', priority: 'critical' }, { name: 'billing', priority: 'standard', model: 'gpt-4o', fallbackModel: 'gpt-4o-mini' }], onDegrade },
  );

describe('the controller’s downgrade to an agent’s fallbackModel, through the integrations', () => {
  for (const stream of [false, true]) {
    it(`OpenAI Agents SDK${stream ? ', streamed' : ''}: the hooks start billing under pressure; its call goes to the fallback Model, named on its span`, async () => {
      const usage = (i: number, o: number) => new Usage({ requests: 1, inputTokens: i, outputTokens: o, totalTokens: i + o });
      const own = new ScriptedModel([{ output: [assistantMessage('from gpt-4o')], usage: usage(50, 10) }]);
      const fallback = new ScriptedModel([{ output: [assistantMessage('from gpt-4o-mini')], usage: usage(50, 10) }]);
      const triageModel = new ScriptedModel([{ output: [functionCall('transfer_to_billing', {}, { callId: 'h1' })], usage: usage(1800, 50) }]);
      const billing = new Agent({ name: 'billing', instructions: 'Bill.', model: own });
      const triage = new Agent({ name: 'triage', instructions: 'Route.', model: triageModel, handoffs: [billing] });
      const degrades: unknown[] = [];
      const controller = controllerFor((d) => degrades.push(d));
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      budgetAgents(triage, { controller, recorder, modelName: 'gpt-4o', provider: 'openai', modelsByName: { 'gpt-4o-mini': fallback } });
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller);
      const session = `degrade-agents-${stream}`;
      const output = await recorder.withSession({ sessionId: session }, async () => {
        if (!stream) return (await runner.run(triage, 'refund')).finalOutput;
        const result = await runner.run(triage, 'refund', { stream: true });
        for await (const _ of result) void _;
        await result.completed;
        return result.finalOutput;
      });
      detach();
      assert.deepEqual(degrades, [{ agent: 'billing', action: 'downgrade', model: 'gpt-4o-mini', reason: 'pressure' }]);
      assert.equal(output, 'from gpt-4o-mini');
      assert.deepEqual([own.calls.length, fallback.calls.length], [0, 1], 'the fallback Model answered, not the agent’s own');
      // Retry advice comes from the Model the calls go to now, not the wrapped one.
      own.getRetryAdvice = async () => ({ suggested: false, reason: 'own' });
      fallback.getRetryAdvice = async () => ({ suggested: true, reason: 'fallback' });
      assert.deepEqual(await (billing.model as Model).getRetryAdvice!({} as never), { suggested: true, reason: 'fallback' });
      assert.equal(controller.state('billing').consumed, 60);
      await recorder.close();
      assert.equal(fallback.calls[0]!.streamed, stream);
      const nodes = await llmNodes(session);
      assert.deepEqual(
        nodes.map((n) => [n.agent, n.model]),
        [
          ['triage', 'gpt-4o'],
          ['billing', 'gpt-4o-mini'],
        ],
      );
      // gpt-4o-mini: $0.15 / $0.60 per million input / output tokens.
      assert.equal(nodes[1]!.selfCostNano, 50 * 150 + 10 * 600);
    });
  }

  for (const stream of [false, true]) {
    it(`AI SDK middleware (${stream ? 'streamText' : 'generateText'}): a call of an agent the controller moved to its fallback goes to that model`, async () => {
      const STOP = { unified: 'stop', raw: 'stop' } as const;
      const mock = (modelId: string) =>
        new MockLanguageModelV4({
          provider: 'openai.chat',
          modelId,
          doGenerate: async () => ({
            content: [{ type: 'text', text: `from ${modelId}` }],
            finishReason: STOP,
            usage: { inputTokens: { total: 50, noCache: 50, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 10, text: 10, reasoning: undefined } },
            warnings: [],
          }),
          doStream: async () => ({
            stream: new ReadableStream({
              start(c) {
                for (const part of [
                  { type: 'stream-start', warnings: [] },
                  { type: 'text-start', id: 't' },
                  { type: 'text-delta', id: 't', delta: `from ${modelId}` },
                  { type: 'text-end', id: 't' },
                  { type: 'finish', finishReason: STOP, usage: { inputTokens: { total: 50, noCache: 50, cacheRead: 0, cacheWrite: undefined }, outputTokens: { total: 10, text: 10, reasoning: undefined } } },
                ] satisfies Part[])
                  c.enqueue(part);
                c.close();
              },
            }),
          }),
        });
      const own = mock('gpt-4o');
      const fallback = mock('gpt-4o-mini');
      const degrades: unknown[] = [];
      const controller = controllerFor((d) => degrades.push(d));
      controller.start('triage');
      controller.record('triage', 1850); // past degradeAt (0.9 of 2000): under pressure
      controller.finish('triage');
      const plan = controller.start('billing');
      assert.equal(plan.model, 'gpt-4o-mini');
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const model = wrapLanguageModel({ model: own, middleware: apportionMiddleware({ controller, agent: 'billing', recorder, modelsByName: { 'gpt-4o-mini': fallback } }) });
      const session = `degrade-ai-${stream}`;
      const text = await recorder.withSession({ sessionId: session }, async () => {
        if (!stream) return (await generateText({ model, prompt: 'refund' })).text;
        const result = streamText({ model, prompt: 'refund' });
        await result.consumeStream();
        return await result.text;
      });
      assert.equal(text, 'from gpt-4o-mini');
      const calls = (m: typeof own) => (stream ? m.doStreamCalls : m.doGenerateCalls);
      assert.deepEqual([calls(own).length, calls(fallback).length], [0, 1]);
      assert.ok(calls(fallback)[0]!.maxOutputTokens! <= controller.state('billing').allocated, 'capped as the agent’s call');
      assert.equal(controller.state('billing').consumed, 60);
      await recorder.close();
      assert.deepEqual(
        (await llmNodes(session)).map((n) => [n.agent, n.model, n.selfCostNano]),
        [['billing', 'gpt-4o-mini', 50 * 150 + 10 * 600]],
      );
    });
  }
});
