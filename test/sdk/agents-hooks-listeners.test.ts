import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController, SpanRecorder } from '@apportion/sdk';
import { attachBudgetHooks, budgetAgents, runWithBudget } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage, type Model } from '@openai/agents';
import { assistantMessage, functionCall } from '@openai/agents/testing';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * attachBudgetHooks with the agents budgetAgents returned (so agents run as tools are finished too) on Agent objects
 * shared by concurrent requests: each request's hooks hear the shared agents' events through one listener per agent
 * and event, however many requests run, and detaching removes what the request added. Before, every request added
 * its own three listeners to every shared agent, so the eleventh concurrent request made Node warn of a likely
 * memory leak (MaxListenersExceededWarning) and every agent event called every request's listeners. Spans go to a
 * real server over a socket, and each request's tree holds exactly its own run.
 */
setTracingDisabled(true);
const prefix = testPrefix('sdk-agents-listeners');
const server = serveDuring(prefix, { PORT: '0' });
const REQUESTS = 25;

/** A model answering every call with `answer` and 100 input + 10 output tokens (shared by all requests). */
function fixed(answer: () => ReturnType<typeof assistantMessage> | ReturnType<typeof functionCall>): Model {
  const response = () => ({ output: [answer()], usage: new Usage({ requests: 1, inputTokens: 100, outputTokens: 10, totalTokens: 110 }), responseId: 'r' });
  return {
    async getResponse() {
      await new Promise((r) => setImmediate(r));
      return response();
    },
    async *getStreamedResponse() {
      yield { type: 'response_done', response: { id: 'r', usage: { inputTokens: 100, outputTokens: 10, totalTokens: 110 }, output: response().output } } as never;
    },
  };
}

describe('attachBudgetHooks on agents shared by many concurrent requests', () => {
  it(`${REQUESTS} concurrent requests: no listener build-up on the shared agents, each request charged its own run`, async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => void (w.name === 'MaxListenersExceededWarning' && warnings.push(w.message));
    process.on('warning', onWarning);
    const billing = new Agent({ name: 'billing', instructions: 'Bill.', model: fixed(() => assistantMessage('Refund issued.')) });
    const triage = new Agent({ name: 'triage', instructions: 'Route.', handoffs: [billing], model: fixed(() => functionCall('transfer_to_billing', {}, { callId: 'h' })) });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const agents = budgetAgents(triage, { modelName: 'gpt-4o-mini', provider: 'openai', recorder });
    const listeners = () => agents.map((a) => (a as unknown as { eventEmitter: { listenerCount(e: string): number } }).eventEmitter.listenerCount('agent_start'));
    const before = listeners();
    let most = 0;
    const controllers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const controller = new BudgetController({ budgets: { triage: { tokens: 1000 }, billing: { tokens: 1000 } }, unallocatedTokens: 0 }, { agents: [{ name: 'triage' }, { name: 'billing' }] });
        const runner = new Runner({ tracingDisabled: true });
        const detach = attachBudgetHooks(runner, controller, agents);
        most = Math.max(most, ...listeners());
        try {
          const output = await recorder.withSession({ sessionId: `listeners-${i}` }, () => runWithBudget(controller, async () => (await runner.run(triage, `request ${i}`)).finalOutput));
          assert.equal(output, 'Refund issued.');
        } finally {
          detach();
        }
        return controller;
      }),
    );
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    process.off('warning', onWarning);
    assert.deepEqual(warnings, [], 'no MaxListenersExceededWarning');
    assert.ok(most <= before.map((n) => n + 1).reduce((a, b) => Math.max(a, b)), `at most one listener per shared agent and event (saw ${most})`);
    for (const c of controllers) {
      assert.deepEqual(
        c.snapshot().agents.map((a) => [a.name, a.consumed, a.status]),
        [
          ['triage', 110, 'finished'],
          ['billing', 110, 'finished'],
        ],
      );
    }
    await recorder.close();
    for (let i = 0; i < REQUESTS; i++) {
      const tree = (await (await fetch(`${server.rt.url}/v1/sessions/listeners-${i}/cost-tree`)).json()) as { total: { calls: number }; byAgent: { key: string; tokens: { total: number } }[] };
      assert.equal(tree.total.calls, 2);
      assert.deepEqual(Object.fromEntries(tree.byAgent.map((b) => [b.key, b.tokens.total])), { triage: 110, billing: 110 });
    }
  });
});
