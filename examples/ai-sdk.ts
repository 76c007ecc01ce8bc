/**
 * The Vercel AI SDK integration: two agents of one request share a BudgetController; each agent's model is wrapped
 * with `apportionMiddleware`, so its remaining budget caps every call's output, its usage (streamed too) is
 * recorded, it is asked to wrap up near its limit, and its calls become spans.
 *
 *   node --import tsx examples/ai-sdk.ts
 *
 * Runs offline with the AI SDK's MockLanguageModelV4; use a real model instead (e.g. `openai('gpt-4o-mini')` from
 * `@ai-sdk/openai`). With APPORTION_URL set, the budgets come from POST /v1/allocations of that server (pipeline
 * APPORTION_PIPELINE, default `support-triage`, agents `researcher` and `writer` must be in it) and the spans go to it.
 */
import { ApportionClient, BudgetController, SpanRecorder, type AllocationBudgets } from '@apportion/sdk';
import { apportionMiddleware } from '@apportion/sdk/ai';
import { generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';

const url = process.env.APPORTION_URL;
const agents = [{ name: 'researcher', priority: 'critical' as const }, { name: 'writer' }];

function demoModel(output: number): MockLanguageModelV4 {
  const usage = { inputTokens: { total: 900, noCache: 900, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: output, text: output, reasoning: 0 } };
  const finishReason = { unified: 'stop', raw: 'stop' } as const;
  return new MockLanguageModelV4({
    provider: 'openai.chat',
    modelId: 'gpt-4o-mini',
    doGenerate: async () => ({ content: [{ type: 'text', text: 'Three sources agree: refunds take 5 days.' }], finishReason, usage, warnings: [] }),
    doStream: async () => ({
      stream: new ReadableStream({
        start(c) {
          c.enqueue({ type: 'stream-start', warnings: [] });
          c.enqueue({ type: 'text-start', id: '1' });
          for (const delta of ['Your refund ', 'arrives within ', '5 days.']) c.enqueue({ type: 'text-delta', id: '1', delta });
          c.enqueue({ type: 'text-end', id: '1' });
          c.enqueue({ type: 'finish', finishReason, usage });
          c.close();
        },
      }),
    }),
  });
}

async function main(): Promise<void> {
  const allocation: AllocationBudgets & { decisionId?: string } = url
    ? await new ApportionClient({ url, ...(process.env.APPORTION_KEY ? { key: process.env.APPORTION_KEY } : {}) }).allocate({ pipeline: process.env.APPORTION_PIPELINE ?? 'support-triage', unitKey: 'example-user' })
    : { budgets: { researcher: { tokens: 3000 }, writer: { tokens: 2000 } }, unallocatedTokens: 500 };
  const controller = new BudgetController(allocation, {
    agents: agents.filter((a) => a.name in allocation.budgets),
    onWrapUp: (agent, e) => console.log(`  ${agent} is told to wrap up (${e.consumed} of ${e.allocated} tokens)`),
  });
  const recorder = new SpanRecorder({ ...(url ? { url } : {}), flushIntervalMs: 0 });
  const researcher = wrapLanguageModel({ model: demoModel(1500), middleware: apportionMiddleware({ controller, agent: 'researcher', recorder }) });
  const writer = wrapLanguageModel({ model: demoModel(400), middleware: apportionMiddleware({ controller, agent: 'writer', recorder }) });

  await recorder.withSession({ sessionId: `example-ai-${Date.now()}`, ...(allocation.decisionId ? { decisionId: allocation.decisionId } : {}) }, async () => {
    const notes = await recorder.withAgent('researcher', async () => (await generateText({ model: researcher, prompt: 'How long do refunds take?' })).text);
    console.log(`researcher: ${notes}  (${controller.state('researcher').consumed} tokens)`);
    console.log(`  researcher finishes: ${JSON.stringify(controller.finish('researcher'))}`);
    await recorder.withAgent('writer', async () => {
      const result = streamText({ model: writer, prompt: `Answer the customer from: ${notes}` });
      process.stdout.write('writer: ');
      for await (const chunk of result.textStream) process.stdout.write(chunk);
      console.log(`  (${controller.state('writer').consumed} tokens, streamed usage included)`);
    });
  });
  console.log(JSON.stringify(controller.snapshot()));
  if (url) console.log(`spans sent: ${JSON.stringify(await recorder.close())}`);
  else await recorder.close().catch(() => undefined); // no server: the spans stay local
}

await main();
