/**
 * The OpenAI Agents SDK integration: a triage agent hands off to a billing agent; `budgetAgents` gives each agent
 * a model wrapper that spends its own budget (output cap, usage, wrap-up, spans), and `attachBudgetHooks` finishes
 * triage in the controller when it hands off, so what it left goes to billing.
 *
 *   node --import tsx examples/openai-agents.ts
 *
 * Runs offline with the Agents SDK's ScriptedModel; with a real model, pass e.g. `new OpenAIResponsesModel(...)`
 * or leave the agents' model names and give `budgetAgents` a `model`. With APPORTION_URL set, the spans go to
 * that server.
 */
import { BudgetController, SpanRecorder } from '@apportion/sdk';
import { attachBudgetHooks, budgetAgents } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage } from '@openai/agents';
import { assistantMessage, functionCall, ScriptedModel } from '@openai/agents/testing';

setTracingDisabled(true);
const url = process.env.APPORTION_URL;
const usage = (inputTokens: number, outputTokens: number) => new Usage({ requests: 1, inputTokens, outputTokens, totalTokens: inputTokens + outputTokens });

async function main(): Promise<void> {
  const billing = new Agent({
    name: 'billing',
    instructions: 'Resolve billing questions.',
    model: new ScriptedModel([{ output: [assistantMessage('Your refund of $42 was issued today.')], usage: usage(1200, 300) }]),
  });
  const triage = new Agent({
    name: 'triage',
    instructions: 'Route the customer to the right agent.',
    model: new ScriptedModel([{ output: [functionCall('transfer_to_billing', {}, { callId: 'handoff-1' })], usage: usage(600, 40) }]),
    handoffs: [billing],
  });

  const controller = new BudgetController({ budgets: { triage: { tokens: 1500 }, billing: { tokens: 4000 } }, unallocatedTokens: 500 }, { agents: [{ name: 'triage', priority: 'critical' }, { name: 'billing' }] });
  const recorder = new SpanRecorder({ ...(url ? { url } : {}), flushIntervalMs: 0 });
  const agents = budgetAgents(triage, { controller, recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
  const runner = new Runner({ tracingDisabled: true });
  const detach = attachBudgetHooks(runner, controller, agents);

  const result = await recorder.withSession({ sessionId: `example-agents-${Date.now()}` }, () => runner.run(triage, 'I was charged twice, please refund me.'));
  detach();
  console.log(`final output (${result.lastAgent?.name}): ${String(result.finalOutput)}`);
  for (const a of controller.snapshot().agents) console.log(`  ${a.name.padEnd(8)} ${a.status.padEnd(9)} consumed ${a.consumed} of ${a.allocated}`);
  if (url) console.log(`spans sent: ${JSON.stringify(await recorder.close())}`);
  else await recorder.close().catch(() => undefined);
}

await main();
