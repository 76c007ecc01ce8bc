import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController, BudgetExceededError, SpanRecorder } from '@apportion/sdk';
import { ApportionModel, attachBudgetHooks, budgetAgents, runWithBudget, WRAP_UP_MESSAGE } from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage } from '@openai/agents';
import { assistantMessage, functionCall, modelResponder, ScriptedModel, type RecordedModelCall } from '@openai/agents/testing';
import { mulberry32 } from '../../src/learner/rng.js';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

setTracingDisabled(true);
const prefix = testPrefix('sdk-agents');
const server = serveDuring(prefix, { PORT: '0' });

const usage = (inputTokens: number, outputTokens: number) => new Usage({ requests: 1, inputTokens, outputTokens, totalTokens: inputTokens + outputTokens });

/** triage hands off to billing, which answers; each agent has its own scripted model (the SDK's ScriptedModel). */
function graph() {
  const billingModel = new ScriptedModel([{ output: [assistantMessage('Refund issued.')], usage: usage(400, 150) }]);
  const triageModel = new ScriptedModel([{ output: [functionCall('transfer_to_billing', {}, { callId: 'h1' })], usage: usage(300, 40) }]);
  const billing = new Agent({ name: 'billing', instructions: 'Handle billing.', model: billingModel });
  const triage = new Agent({ name: 'triage', instructions: 'Route the customer.', model: triageModel, handoffs: [billing] });
  return { triage, billing, triageModel, billingModel };
}

const controllerFor = (budgets: Record<string, number>, pool = 0) =>
  new BudgetController({ budgets: Object.fromEntries(Object.entries(budgets).map(([k, v]) => [k, { tokens: v }])), unallocatedTokens: pool }, { agents: Object.keys(budgets).map((name) => ({ name, priority: 'standard' as const })) });

async function costTree(session: string) {
  return (await (await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`)).json()) as {
    total: { calls: number; tokens: { input: number; output: number } };
    byAgent: { key: string; tokens: { total: number } }[];
  };
}

/** Runs the agent to its final output, plain or streamed (the stream read to its end). */
async function runToEnd(runner: Runner, agent: Parameters<Runner['run']>[0], input: string, stream: boolean): Promise<unknown> {
  if (!stream) return (await runner.run(agent, input)).finalOutput;
  const result = await runner.run(agent, input, { stream: true });
  for await (const _ of result) void _;
  await result.completed;
  return result.finalOutput;
}

describe('OpenAI Agents SDK: per-agent model wrappers and run hooks (ScriptedModel)', () => {
  for (const stream of [false, true]) {
    it(`a multi-agent run with a handoff${stream ? ', streamed' : ''}: each agent capped, metered and attributed; the handoff frees triage's rest for billing`, async () => {
      const { triage, triageModel, billingModel } = graph();
      const controller = controllerFor({ triage: 1000, billing: 2000 });
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const wrapped = budgetAgents(triage, { controller, recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
      assert.deepEqual(wrapped.map((a) => a.name).sort(), ['billing', 'triage']);
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller);
      const session = `agents-${stream ? 'stream' : 'plain'}`;
      const output = await recorder.withSession({ sessionId: session }, () => runToEnd(runner, triage, 'I want my money back', stream));
      detach();
      assert.equal(output, 'Refund issued.');
      assert.equal(triageModel.calls[0]!.request.modelSettings.maxTokens, 1000);
      // Triage used 340 and handed off: its 660 left went to billing before billing's call.
      assert.equal(billingModel.calls[0]!.request.modelSettings.maxTokens, 2660);
      assert.equal(triageModel.calls[0]!.streamed, stream);
      assert.deepEqual(
        controller.snapshot().agents.map((a) => [a.name, a.consumed, a.status]),
        [['triage', 340, 'finished'], ['billing', 550, 'finished']],
      );
      assert.equal((await recorder.close()).accepted, 4, 'an agent span and an llm span per agent');
      const tree = await costTree(session);
      assert.equal(tree.total.calls, 2);
      assert.deepEqual(Object.fromEntries(tree.byAgent.map((b) => [b.key, b.tokens.total])), { triage: 340, billing: 550 });
    });
  }

  for (const stream of [false, true]) {
    it(`a hand-back (triage → billing → triage${stream ? ', streamed' : ''}): the returning agent runs again on what it left, taken back from the pool`, async () => {
      const triageModel = new ScriptedModel([
        { output: [functionCall('transfer_to_billing', {}, { callId: 'h1' })], usage: usage(600, 40) },
        { output: [assistantMessage('Anything else?')], usage: usage(700, 20) },
      ]);
      const billingModel = new ScriptedModel([{ output: [functionCall('transfer_to_triage', {}, { callId: 'h2' })], usage: usage(900, 30) }]);
      const triage = new Agent({ name: 'triage', instructions: 'Route the customer.', model: triageModel });
      const billing = new Agent({ name: 'billing', instructions: 'Handle billing.', model: billingModel });
      triage.handoffs = [billing];
      billing.handoffs = [triage];
      const controller = new BudgetController({ budgets: { triage: { tokens: 3000 }, billing: { tokens: 3000 } }, unallocatedTokens: 0 }, { agents: [{ name: 'triage', priority: 'critical' }, { name: 'billing' }] });
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      budgetAgents(triage, { controller, recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller);
      const session = `agents-handback-${stream ? 'stream' : 'plain'}`;
      const output = await recorder.withSession({ sessionId: session }, () => runToEnd(runner, triage, 'I was charged twice', stream));
      detach();
      assert.equal(output, 'Anything else?');
      // triage left 2360 at its handoff (to billing); billing left 4430 to the pool; triage takes its 2360 back.
      assert.equal(billingModel.calls[0]!.request.modelSettings.maxTokens, 5360);
      assert.equal(triageModel.calls[1]!.request.modelSettings.maxTokens, 2360);
      const snap = controller.snapshot();
      assert.deepEqual(
        snap.agents.map((a) => [a.name, a.consumed, a.allocated, a.status]),
        [['triage', 1360, 1360, 'finished'], ['billing', 930, 930, 'finished']],
      );
      assert.equal(snap.pool, 6000 - 1360 - 930, 'what nobody used is back in the pool');
      assert.equal((await recorder.close()).accepted, 6, 'an agent span and an llm span per model call');
      const tree = await costTree(session);
      assert.deepEqual(Object.fromEntries(tree.byAgent.map((b) => [b.key, b.tokens.total])), { triage: 1360, billing: 930 });
    });
  }

  for (const stream of [false, true]) {
    it(`an agent run as a tool${stream ? ' (streamed)' : ''} is finished when its nested run ends: what it left reaches the agent handed off to next`, async () => {
      const researchModel = new ScriptedModel([{ output: [assistantMessage('three facts')], usage: usage(100, 50) }]);
      const writerModel = new ScriptedModel([
        { output: [functionCall('research', { input: 'find facts' }, { callId: 't1' })], usage: usage(10, 5) },
        { output: [functionCall('transfer_to_editor', {}, { callId: 'h1' })], usage: usage(20, 5) },
      ]);
      const editorModel = new ScriptedModel([{ output: [assistantMessage('Edited.')], usage: usage(30, 10) }]);
      const research = new Agent({ name: 'research', instructions: 'Research.', model: researchModel });
      const editor = new Agent({ name: 'editor', instructions: 'Edit.', model: editorModel });
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model: writerModel, handoffs: [editor], tools: [research.asTool({ toolName: 'research', toolDescription: 'Finds facts.' })] });
      const controller = controllerFor({ writer: 1000, research: 2000, editor: 500 });
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const wrapped = budgetAgents([writer, research], { controller, recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
      assert.deepEqual(wrapped.map((a) => a.name).sort(), ['editor', 'research', 'writer']);
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller, wrapped);
      let runContext: unknown;
      runner.on('agent_start', (ctx) => void (runContext ??= ctx));
      const output = await recorder.withSession({ sessionId: `agents-as-tool-${stream ? 'stream' : 'plain'}` }, () => runToEnd(runner, writer, 'Write a note', stream));
      detach();
      assert.equal(output, 'Edited.');
      assert.equal(researchModel.calls[0]!.request.modelSettings.maxTokens, 2000);
      // research used 150 of 2000 and writer 40 of 1000: both rests (1850 + 960) went to editor, still to run.
      assert.equal(editorModel.calls[0]!.request.modelSettings.maxTokens, 500 + 1850 + 960);
      assert.deepEqual(
        controller.snapshot().agents.map((a) => [a.name, a.consumed, a.status]),
        [['writer', 40, 'finished'], ['research', 150, 'finished'], ['editor', 40, 'finished']],
      );
      research.emit('agent_start', runContext as never, research as never);
      assert.equal(controller.state('research').status, 'finished', "detached: the agent's own events no longer reach the controller");
      await recorder.close();
    });
  }

  for (const stream of [false, true]) {
    it(`an agent run as a tool that goes over its budget${stream ? ' (streamed)' : ''} is finished all the same: the parent's model gets the tool error, the controller holds nothing open`, async () => {
      // research's one call uses 450 of its 300 with an empty pool: recording it throws BudgetExceededError inside
      // the nested run, which the Agents SDK turns into the tool's output for writer (no agent_end for research).
      const researchModel = new ScriptedModel([{ output: [assistantMessage('too long')], usage: usage(400, 50) }]);
      const writerModel = new ScriptedModel([
        { output: [functionCall('research', { input: 'find facts' }, { callId: 't1' })], usage: usage(10, 5) },
        { output: [functionCall('transfer_to_editor', {}, { callId: 'h1' })], usage: usage(20, 5) },
      ]);
      const editorModel = new ScriptedModel([{ output: [assistantMessage('Edited.')], usage: usage(30, 10) }]);
      const research = new Agent({ name: 'research', instructions: 'Research.', model: researchModel });
      const editor = new Agent({ name: 'editor', instructions: 'Edit.', model: editorModel });
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model: writerModel, handoffs: [editor], tools: [research.asTool({ toolName: 'research', toolDescription: 'Finds facts.' })] });
      const controller = controllerFor({ writer: 1000, research: 300, editor: 500 });
      const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
      const wrapped = budgetAgents([writer, research], { controller, recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller, wrapped);
      const output = await recorder.withSession({ sessionId: `agents-as-tool-over-${stream ? 'stream' : 'plain'}` }, () => runToEnd(runner, writer, 'Write a note', stream));
      detach();
      assert.equal(output, 'Edited.', 'the parent run goes on');
      assert.equal(researchModel.calls.length, 1);
      // The SDK's tool error text is what writer's model sees as the research tool's output.
      const toolOutput = JSON.stringify(writerModel.calls[1]!.request.input);
      assert.match(toolOutput, /An error occurred while running the tool/);
      assert.deepEqual(
        controller.snapshot().agents.map((a) => [a.name, a.consumed, a.status]),
        [['writer', 40, 'finished'], ['research', 450, 'finished'], ['editor', 40, 'finished']],
      );
      assert.equal(controller.inFlight('research'), 0);
      // writer's 960 left went to editor; research left nothing (it is 150 over, uncovered).
      assert.equal(editorModel.calls[0]!.request.modelSettings.maxTokens, 500 + 960);
      await recorder.close();
    });
  }

  it('a top-level agent that goes over its budget: runner.run rejects with BudgetExceededError and the hooks finish the agent', async () => {
    const writerModel = new ScriptedModel([{ output: [assistantMessage('too long')], usage: usage(300, 100) }]);
    const writer = new Agent({ name: 'writer', instructions: 'Write.', model: writerModel });
    const controller = controllerFor({ writer: 250, editor: 500 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    budgetAgents(writer, { controller, recorder });
    const runner = new Runner({ tracingDisabled: true });
    const detach = attachBudgetHooks(runner, controller);
    await assert.rejects(runner.run(writer, 'go'), (e: Error) => e instanceof BudgetExceededError && e.scope === 'agent' && e.agent === 'writer');
    detach();
    assert.deepEqual(controller.state('writer'), { name: 'writer', priority: 'standard', criticalPath: false, allocated: 250, consumed: 400, status: 'finished' });
    assert.equal(controller.inFlight('writer'), 0);
    await recorder.close();
  });

  it('asks an agent near its limit to wrap up, and refuses a call when it has nothing left', async () => {
    const inner = new ScriptedModel([
      { output: [assistantMessage('draft')], usage: usage(500, 430) },
      { output: [assistantMessage('final')], usage: usage(40, 30) },
    ]);
    const controller = controllerFor({ writer: 1000 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const writer = new Agent({ name: 'writer', instructions: 'Write.', model: new ApportionModel(inner, { controller, agent: 'writer', recorder }) });
    const runner = new Runner({ tracingDisabled: true });
    assert.equal((await runner.run(writer, 'go')).finalOutput, 'draft');
    assert.equal((await runner.run(writer, 'again')).finalOutput, 'final');
    assert.equal(inner.calls[1]!.request.systemInstructions, `Write.\n\n${WRAP_UP_MESSAGE}`);
    assert.equal(inner.calls[1]!.request.modelSettings.maxTokens, 70);
    assert.equal(controller.available('writer'), 0);
    await assert.rejects(runner.run(writer, 'more'), /agent "writer" has used its whole budget \(1000 of 1000 tokens\) and the pool is empty/);
    assert.equal(inner.calls.length, 2, 'the model was not called');
    await recorder.close();
  });

  it('parallel runs of one agent share what is left: each call claims its cap until it ends (plain and streamed)', async () => {
    const inner = new ScriptedModel([
      { output: [assistantMessage('one')], usage: usage(10, 300) },
      { output: [assistantMessage('two')], usage: usage(10, 300) },
      { output: [assistantMessage('three')], usage: usage(10, 300) },
    ]);
    const controller = controllerFor({ writer: 1000, editor: 1000 });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const model = new ApportionModel(inner, { controller, agent: 'writer', recorder });
    const writer = new Agent({ name: 'writer', instructions: 'Write.', model, modelSettings: { maxTokens: 400 } });
    controller.start('writer');
    const runner = new Runner({ tracingDisabled: true });
    const runs = await Promise.allSettled([runner.run(writer, 'a'), runToEnd(runner, writer, 'b', true), runner.run(writer, 'c')]);
    // 400 + 400 + the 200 left: three calls in flight together never hold more than the writer's 1000.
    assert.deepEqual(inner.calls.map((c) => c.request.modelSettings.maxTokens).sort(), [200, 400, 400]);
    assert.deepEqual(runs.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled']);
    assert.equal(controller.inFlight('writer'), 0);
    assert.equal(controller.available('writer'), 1000 - 930);
    await recorder.close();
  });

  it('refuses to wrap a graph with an agent the controller does not know, changing nothing', () => {
    const { triage, billing } = graph();
    const before = billing.model;
    assert.throws(() => budgetAgents(triage, { controller: controllerFor({ triage: 100 }) }), /unknown agent "billing"/);
    assert.equal(billing.model, before);
  });
});

/**
 * Agents defined once (module level, as apps using the Agents SDK usually do) and run per request, each request with
 * its own BudgetController: each model call must spend the controller of the run it belongs to.
 */
describe('OpenAI Agents SDK: agents shared by requests, each request with its own controller', () => {
  it('two sequential requests wrapping the same agents with their own controller: each charged only its own run; outside runWithBudget the shared model refuses instead of charging the first request', async () => {
    const triageModel = new ScriptedModel([
      { output: [functionCall('transfer_to_billing', {}, { callId: 'h1' })], usage: usage(300, 40) },
      { output: [functionCall('transfer_to_billing', {}, { callId: 'h2' })], usage: usage(200, 20) },
    ]);
    const billingModel = new ScriptedModel([
      { output: [assistantMessage('Refund issued.')], usage: usage(400, 150) },
      { output: [assistantMessage('Invoice sent.')], usage: usage(100, 50) },
    ]);
    const billing = new Agent({ name: 'billing', instructions: 'Handle billing.', model: billingModel });
    const triage = new Agent({ name: 'triage', instructions: 'Route the customer.', model: triageModel, handoffs: [billing] });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const request = async (controller: BudgetController, input: string) => {
      const agents = budgetAgents(triage, { controller, recorder });
      const runner = new Runner({ tracingDisabled: true });
      const detach = attachBudgetHooks(runner, controller, agents);
      try {
        return (await runWithBudget(controller, () => runner.run(triage, input))).finalOutput;
      } finally {
        detach();
      }
    };
    const c1 = controllerFor({ triage: 1000, billing: 2000 });
    const c2 = controllerFor({ triage: 700, billing: 900 });
    assert.equal(await request(c1, 'refund'), 'Refund issued.');
    assert.equal(await request(c2, 'invoice'), 'Invoice sent.');
    const consumed = (c: BudgetController) => c.snapshot().agents.map((a) => [a.name, a.consumed, a.status]);
    assert.deepEqual(consumed(c1), [['triage', 340, 'finished'], ['billing', 550, 'finished']]);
    assert.deepEqual(consumed(c2), [['triage', 220, 'finished'], ['billing', 150, 'finished']]);
    // Request 2's caps come from its own allocation: triage 700, billing 900 + triage's 480 left.
    assert.equal(triageModel.calls[1]!.request.modelSettings.maxTokens, 700);
    assert.equal(billingModel.calls[1]!.request.modelSettings.maxTokens, 900 + 480);
    // Wrapped by two controllers, the model is shared: a run outside runWithBudget is refused, charging nobody.
    await assert.rejects(new Runner({ tracingDisabled: true }).run(triage, 'again'), /agent "triage" has no BudgetController for this call: .*runWithBudget/);
    assert.equal(triageModel.calls.length, 2, 'the model was not called');
    assert.deepEqual(consumed(c1), [['triage', 340, 'finished'], ['billing', 550, 'finished']]);
    assert.deepEqual(consumed(c2), [['triage', 220, 'finished'], ['billing', 150, 'finished']]);
    await recorder.close();
  });

  it('10 concurrent requests (plain and streamed) on agents wrapped once: each controller gets exactly its run\'s usage and caps, the agent run as a tool included, and an over-budget tool agent is finished per request', async () => {
    const rng = mulberry32(0x5ca1ab1e);
    const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
    const N = 10;
    const plan = Array.from({ length: N }, (_, i) => {
      const u = { writer0: [int(10, 200), int(5, 60)], writer1: [int(10, 200), int(5, 60)], research: [int(50, 400), int(20, 200)], editor: [int(10, 150), int(5, 80)] } as const;
      const tokens = (k: keyof typeof u) => u[k][0] + u[k][1];
      // Every third request's research goes over its budget (the pool is empty): the tool error path, per request.
      const over = i % 3 === 0;
      const budgets = { writer: 1000 + int(0, 500), research: over ? tokens('research') - int(1, 40) : tokens('research') + int(0, 800), editor: 500 + int(0, 300) };
      return { u, tokens, over, budgets, stream: i % 2 === 1, delays: Array.from({ length: 4 }, () => int(0, 3)) };
    });
    const requestOf = (call: RecordedModelCall) => Number(/req-(\d+)/.exec(JSON.stringify(call.request.input))![1]);
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    // One scripted model per agent, shared by the requests: each step answers for the request its input names.
    const scripted = (respond: (p: (typeof plan)[number], i: number, call: RecordedModelCall) => Promise<{ output: ReturnType<typeof assistantMessage | typeof functionCall>[]; usage: Usage }>, steps: number) =>
      new ScriptedModel(Array.from({ length: steps }, () => modelResponder((call) => respond(plan[requestOf(call)]!, requestOf(call), call))));
    const writerModel = scripted(async (p, i, call) => {
      const second = JSON.stringify(call.request.input).includes('function_call_result');
      await pause(p.delays[second ? 1 : 0]!);
      return second
        ? { output: [functionCall('transfer_to_editor', {}, { callId: `h-${i}` })], usage: usage(p.u.writer1[0], p.u.writer1[1]) }
        : { output: [functionCall('research', { input: `req-${i}: find facts` }, { callId: `t-${i}` })], usage: usage(p.u.writer0[0], p.u.writer0[1]) };
    }, 2 * N);
    const researchModel = scripted(async (p, i) => {
      await pause(p.delays[2]!);
      return { output: [assistantMessage(`facts for ${i}`)], usage: usage(p.u.research[0], p.u.research[1]) };
    }, N);
    const editorModel = scripted(async (p, i) => {
      await pause(p.delays[3]!);
      return { output: [assistantMessage(`Edited ${i}.`)], usage: usage(p.u.editor[0], p.u.editor[1]) };
    }, N);
    // Module level: the agents, wrapped once, without a controller.
    const research = new Agent({ name: 'research', instructions: 'Research.', model: researchModel });
    const editor = new Agent({ name: 'editor', instructions: 'Edit.', model: editorModel });
    const writer = new Agent({ name: 'writer', instructions: 'Write.', model: writerModel, handoffs: [editor], tools: [research.asTool({ toolName: 'research', toolDescription: 'Finds facts.' })] });
    const recorder = new SpanRecorder({ url: server.rt.url!, flushIntervalMs: 0, timeoutMs: 60_000 });
    const agents = budgetAgents([writer, research], { recorder, modelName: 'gpt-4o-mini', provider: 'openai' });
    await assert.rejects(new Runner({ tracingDisabled: true }).run(writer, 'req-0'), /agent "writer" has no BudgetController for this call/, 'no scope, no controller: refused');

    const session = (i: number) => `agents-shared-${i}`;
    const controllers = plan.map((p) => controllerFor(p.budgets));
    const outputs = await Promise.all(
      plan.map(async (p, i) => {
        const controller = controllers[i]!;
        const runner = new Runner({ tracingDisabled: true });
        const detach = attachBudgetHooks(runner, controller, agents);
        try {
          return await recorder.withSession({ sessionId: session(i) }, () => runWithBudget(controller, () => runToEnd(runner, writer, `req-${i}: write a note`, p.stream)));
        } finally {
          detach();
        }
      }),
    );
    assert.deepEqual(outputs, plan.map((_, i) => `Edited ${i}.`));
    const callsOf = (m: ScriptedModel, i: number) => m.calls.filter((c) => requestOf(c) === i);
    for (const [i, p] of plan.entries()) {
      const c = controllers[i]!;
      const writerUsed = p.tokens('writer0') + p.tokens('writer1');
      assert.deepEqual(
        c.snapshot().agents.map((a) => [a.name, a.consumed, a.status]),
        [['writer', writerUsed, 'finished'], ['research', p.tokens('research'), 'finished'], ['editor', p.tokens('editor'), 'finished']],
        `request ${i}: its own usage, nothing of the others`,
      );
      for (const name of ['writer', 'research', 'editor']) assert.equal(c.inFlight(name), 0);
      assert.deepEqual(callsOf(writerModel, i).map((x) => x.request.modelSettings.maxTokens), [p.budgets.writer, p.budgets.writer - p.tokens('writer0')], `request ${i}: writer's caps`);
      assert.deepEqual(callsOf(researchModel, i).map((x) => x.request.modelSettings.maxTokens), [p.budgets.research], `request ${i}: research's cap`);
      // What writer and research left (research over budget: nothing) went to editor, still to run.
      const researchLeft = Math.max(0, p.budgets.research - p.tokens('research'));
      assert.deepEqual(callsOf(editorModel, i).map((x) => x.request.modelSettings.maxTokens), [p.budgets.editor + (p.budgets.writer - writerUsed) + researchLeft], `request ${i}: editor's cap`);
      assert.equal(callsOf(writerModel, i)[1]!.streamed, p.stream);
      assert.equal(/An error occurred while running the tool/.test(JSON.stringify(callsOf(writerModel, i)[1]!.request.input)), p.over, `request ${i}: the tool error only where research went over`);
    }
    assert.equal((await recorder.close()).accepted, N * 8, 'per request: an agent span and an llm span per model call');
    for (const [i, p] of plan.entries()) {
      const tree = await costTree(session(i));
      assert.deepEqual(Object.fromEntries(tree.byAgent.map((b) => [b.key, b.tokens.total])), { writer: p.tokens('writer0') + p.tokens('writer1'), research: p.tokens('research'), editor: p.tokens('editor') }, `request ${i}'s spans`);
    }
  });

  it('an agent the controller in scope does not know: a clear error, its model not called', async () => {
    const inner = new ScriptedModel([{ output: [assistantMessage('hi')], usage: usage(1, 1) }]);
    const writer = new Agent({ name: 'writer', instructions: 'Write.', model: inner });
    budgetAgents(writer, { controller: controllerFor({ writer: 100 }) });
    const other = controllerFor({ editor: 100 });
    await assert.rejects(
      runWithBudget(other, () => new Runner({ tracingDisabled: true }).run(writer, 'go')),
      /agent "writer" is unknown to the BudgetController of the runWithBudget scope/,
    );
    assert.equal(inner.calls.length, 0);
  });

  it('wrapping an agent again with other span options is refused, changing nothing', () => {
    const { triage, billing } = graph();
    budgetAgents(triage, { controller: controllerFor({ triage: 100, billing: 100 }), provider: 'openai' });
    const before = [triage.model, billing.model];
    assert.throws(() => budgetAgents(triage, { controller: controllerFor({ triage: 100, billing: 100 }), provider: 'azure' }), /agent "(triage|billing)" is already wrapped with another provider: .*runWithBudget/);
    assert.deepEqual([triage.model, billing.model], before);
    assert.equal((triage.model as ApportionModel).fallbackController !== undefined, true, 'the refused call did not unbind it');
  });
});
