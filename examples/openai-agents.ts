/**
 * The OpenAI Agents SDK integration: a triage agent hands off to a billing agent; `budgetAgents` gives each agent
 * a model wrapper that spends its own budget (output cap, usage, wrap-up, spans), and `attachBudgetHooks` finishes
 * triage in the controller when it hands off, so what it left goes to billing.
 *
 * The agents are defined and wrapped once, at module level, and shared by the requests, as apps using the Agents
 * SDK usually do; each request has its own BudgetController (its own allocation) and runs inside
 * `runWithBudget(controller, …)`, so every model call of its run spends that controller, and only it, even while
 * other requests run the same agents. Two requests run here, concurrently.
 *
 *   node --import tsx examples/openai-agents.ts
 *
 * Runs offline with the Agents SDK's ScriptedModel; with a real model, pass e.g. `new OpenAIResponsesModel(...)`
 * or leave the agents' model names and give `budgetAgents` a `model`. With APPORTION_URL set, the spans go to
 * that server.
 */
import { BudgetController, SpanRecorder } from '@apportion/sdk';
import { attachBudgetHooks, budgetAgents, runWithBudget } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage } from '@openai/agents';
import { assistantMessage, functionCall, ScriptedModel } from '@openai/agents/testing';

setTracingDisabled(true);
const url = process.env.APPORTION_URL;
const usage = (inputTokens: number, outputTokens: number) => new Usage({ requests: 1, inputTokens, outputTokens, totalTokens: inputTokens + outputTokens });

// Module level: the agents, their (scripted) models, and the wrappers, made once. One scripted answer per request.
const billing = new Agent({
  name: 'billing',
  instructions: 'Resolve billing questions.',
  model: new ScriptedModel([
    { output: [assistantMessage('Your refund of $42 was issued today.')], usage: usage(1200, 300) },
    { output: [assistantMessage('Your invoice is on its way.')], usage: usage(800, 120) },
  ]),
});
const triage = new Agent({
  name: 'triage',
  instructions: 'Route the customer to the right agent.',
  model: new ScriptedModel([
    { output: [functionCall('transfer_to_billing', {}, { callId: 'handoff-1' })], usage: usage(600, 40) },
    { output: [functionCall('transfer_to_billing', {}, { callId: 'handoff-2' })], usage: usage(450, 30) },
  ]),
  handoffs: [billing],
});
const recorder = new SpanRecorder({ ...(url ? { url } : {}), flushIntervalMs: 0 });
const agents = budgetAgents(triage, { recorder, modelName: 'gpt-4o-mini', provider: 'openai' }); // no controller: each request brings its own

/** One request: its own controller (here fixed budgets; in an app, from its allocation), Runner and hooks. */
async function handle(question: string, budgets: { triage: number; billing: number }): Promise<string> {
  const controller = new BudgetController(
    { budgets: { triage: { tokens: budgets.triage }, billing: { tokens: budgets.billing } }, unallocatedTokens: 500 },
    { agents: [{ name: 'triage', priority: 'critical' }, { name: 'billing' }] },
  );
  const runner = new Runner({ tracingDisabled: true });
  const detach = attachBudgetHooks(runner, controller, agents);
  try {
    const result = await recorder.withSession({ sessionId: `example-agents-${Date.now()}-${budgets.triage}` }, () => runWithBudget(controller, () => runner.run(triage, question)));
    const lines = controller.snapshot().agents.map((a) => `  ${a.name.padEnd(8)} ${a.status.padEnd(9)} consumed ${a.consumed} of ${a.allocated}`);
    return [`"${question}" → final output (${result.lastAgent?.name}): ${String(result.finalOutput)}`, ...lines].join('\n');
  } finally {
    detach();
  }
}

async function main(): Promise<void> {
  const reports = await Promise.all([handle('I was charged twice, please refund me.', { triage: 1500, billing: 4000 }), handle('Can you send me my invoice?', { triage: 1000, billing: 2000 })]);
  for (const r of reports) console.log(r);
  if (url) console.log(`spans sent: ${JSON.stringify(await recorder.close())}`);
  else await recorder.close().catch(() => undefined);
}

await main();
