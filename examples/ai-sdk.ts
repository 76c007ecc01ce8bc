/**
 * The Vercel AI SDK integration: two agents of one request share a BudgetController; each agent's model is wrapped
 * with `apportionMiddleware`, so its remaining budget caps every call's output, its usage (streamed too) is
 * recorded, it is asked to wrap up near its limit, and its calls become spans.
 *
 *   node --import tsx examples/ai-sdk.ts
 *
 * Runs offline with the AI SDK's MockLanguageModelV4; use a real model instead (e.g. `openai('gpt-4o-mini')` from
 * `@ai-sdk/openai`). With APPORTION_URL set, the budgets come from POST /v1/allocations of that server (pipeline
 * APPORTION_PIPELINE, default `support-triage`, the server's example pipeline; any pipeline works) and the spans go
 * to it. The controller is given every agent of the allocation; the research step runs as `researcher` and the
 * answer as `writer` when the pipeline has them, else as its first two agents (APPORTION_AGENTS=a,b picks others).
 */
import { ApportionClient, BudgetController, SpanRecorder, type AllocationBudgets, type ControllerAgent } from '@apportion/sdk';
import { apportionMiddleware } from '@apportion/sdk/ai';
import { generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';

const url = process.env.APPORTION_URL;
const pipeline = process.env.APPORTION_PIPELINE ?? 'support-triage';

/** A stand-in model: a short prompt, and an answer of `output` tokens or as many as the call allows. */
function demoModel(output: number): MockLanguageModelV4 {
  const usage = (out: number) => ({ inputTokens: { total: 120, noCache: 120, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: out, text: out, reasoning: 0 } });
  const finish = (limit: number | undefined) => {
    const out = Math.min(output, limit ?? output);
    return { usage: usage(out), finishReason: { unified: out < output ? 'length' : 'stop', raw: out < output ? 'length' : 'stop' } as const };
  };
  return new MockLanguageModelV4({
    provider: 'openai.chat',
    modelId: 'gpt-4o-mini',
    doGenerate: async ({ maxOutputTokens }) => ({ content: [{ type: 'text', text: 'Three sources agree: refunds take 5 days.' }], ...finish(maxOutputTokens), warnings: [] }),
    doStream: async ({ maxOutputTokens }) => ({
      stream: new ReadableStream({
        start(c) {
          c.enqueue({ type: 'stream-start', warnings: [] });
          c.enqueue({ type: 'text-start', id: '1' });
          for (const delta of ['Your refund ', 'arrives within ', '5 days.']) c.enqueue({ type: 'text-delta', id: '1', delta });
          c.enqueue({ type: 'text-end', id: '1' });
          c.enqueue({ type: 'finish', ...finish(maxOutputTokens) });
          c.close();
        },
      }),
    }),
  });
}

/** The request's budgets and agents: from the server's allocation, or a local stand-in. */
async function allocate(): Promise<{ allocation: AllocationBudgets & { decisionId?: string }; agents: ControllerAgent[]; client?: ApportionClient }> {
  if (!url) {
    return {
      allocation: { budgets: { researcher: { tokens: 3000 }, writer: { tokens: 2000 } }, unallocatedTokens: 500 },
      agents: [{ name: 'researcher', priority: 'critical' }, { name: 'writer' }],
    };
  }
  const client = new ApportionClient({ url, ...(process.env.APPORTION_KEY ? { key: process.env.APPORTION_KEY } : {}) });
  const allocation = await client.allocate({ pipeline, unitKey: 'example-user' });
  // Every agent the allocation names, with the pipeline's priorities and caps when this key may read the pipeline
  // (analyst or admin); a client key gets the names only (every agent standard).
  const declared = await client.request<{ agents: ControllerAgent[] }>('GET', `/v1/pipelines/${pipeline}`).then((p) => p.agents, () => []);
  const agents = Object.keys(allocation.budgets).map((name) => declared.find((a) => a.name === name) ?? { name });
  return { allocation, agents, client };
}

async function main(): Promise<void> {
  const { allocation, agents, client } = await allocate();
  const names = agents.map((a) => a.name);
  const picked = process.env.APPORTION_AGENTS?.split(',');
  const [researcherAgent, writerAgent] = picked ?? (names.includes('researcher') && names.includes('writer') ? ['researcher', 'writer'] : names);
  if (!researcherAgent || !writerAgent) throw new Error(`pipeline "${pipeline}" needs two agents for this example`);
  const controller = new BudgetController(allocation, {
    agents,
    onWrapUp: (agent, e) => console.log(`  ${agent} is told to wrap up (${e.consumed} of ${e.allocated} tokens)`),
  });
  const recorder = new SpanRecorder({ ...(url ? { url } : {}), flushIntervalMs: 0 });
  const researcher = wrapLanguageModel({ model: demoModel(1500), middleware: apportionMiddleware({ controller, agent: researcherAgent, recorder }) });
  const writer = wrapLanguageModel({ model: demoModel(400), middleware: apportionMiddleware({ controller, agent: writerAgent, recorder }) });

  await recorder.withSession({ sessionId: `example-ai-${Date.now()}`, ...(allocation.decisionId ? { decisionId: allocation.decisionId } : {}) }, async () => {
    controller.start(researcherAgent);
    const notes = await recorder.withAgent(researcherAgent, async () => (await generateText({ model: researcher, prompt: 'How long do refunds take?' })).text);
    console.log(`${researcherAgent}: ${notes}  (${controller.state(researcherAgent).consumed} of ${controller.state(researcherAgent).allocated} tokens)`);
    console.log(`  ${researcherAgent} finishes: ${JSON.stringify(controller.finish(researcherAgent))}`);
    controller.start(writerAgent);
    await recorder.withAgent(writerAgent, async () => {
      const result = streamText({ model: writer, prompt: `Answer the customer from: ${notes}` });
      process.stdout.write(`${writerAgent}: `);
      for await (const chunk of result.textStream) process.stdout.write(chunk);
      console.log(`  (${controller.state(writerAgent).consumed} tokens, streamed usage included)`);
    });
    controller.finish(writerAgent);
  });
  console.log(JSON.stringify(controller.snapshot()));
  if (!client || allocation.decisionId === undefined) return; // no server: the spans stay local
  // The outcome, with the usage of the agents the allocation names (usageFor), then the spans.
  const { decisionId } = allocation;
  console.log(`outcome: ${JSON.stringify(await client.reportOutcome({ decisionId, quality: 0.9, usage: recorder.usageFor({ decisionId, budgets: allocation.budgets }) }))}`);
  console.log(`spans sent: ${JSON.stringify(await recorder.close())}`);
}

await main();
