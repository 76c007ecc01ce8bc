import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import * as esmRoot from '@apportion/sdk';
import { BudgetController } from '@apportion/sdk';
import * as esm from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage } from '@openai/agents';
import { assistantMessage, ScriptedModel } from '@openai/agents/testing';

/**
 * The dual package hazard: one process loads the SDK's ES module build (the app's `import`) and its CommonJS build
 * (a dependency's `require`). Two copies of the integration module, so two of everything module-level in it; the
 * runWithBudget scope must still be one, or shared agents defined through one copy never see the controller of a
 * scope opened through the other (and refuse every call, or charge the controller they were built with).
 * The same for what identifies the SDK's objects: a model wrapped by one copy is recognised as wrapped by the other's
 * budgetAgents, the over-budget finish of one copy's attachBudgetHooks hears the other copy's models, and a
 * BudgetExceededError of either copy is one of both (`instanceof`), whichever copy made the controller; and the
 * process-wide span recorder configured through one copy is the one the other copy's models record into.
 * Runs against the built package (packages/sdk/dist: `npm run build -w @apportion/sdk`), both of its builds.
 */
setTracingDisabled(true);
const require = createRequire(import.meta.url);
const cjs = require('@apportion/sdk/openai-agents') as typeof esm;
const cjsRoot = require('@apportion/sdk') as typeof esmRoot;
const builds = { esm: { root: esmRoot, agents: esm }, cjs: { root: cjsRoot, agents: cjs } } as const;
type Build = keyof typeof builds;

const usage = (inputTokens: number, outputTokens: number) => new Usage({ requests: 1, inputTokens, outputTokens, totalTokens: inputTokens + outputTokens });
const controllerFor = (tokens: number) => new BudgetController({ budgets: { writer: { tokens } }, unallocatedTokens: 0 }, { agents: [{ name: 'writer', priority: 'standard' as const }] });

describe('SDK loaded as ES module and as CommonJS in one process: one runWithBudget scope, one identity for models, hooks and budget errors', () => {
  it('the two builds are separate copies (the hazard this guards against is real here)', () => {
    assert.equal(typeof cjs.runWithBudget, 'function');
    assert.notEqual(cjs.ApportionModel, esm.ApportionModel);
    assert.notEqual(cjs.runWithBudget, esm.runWithBudget);
    assert.notEqual(cjsRoot.BudgetController, esmRoot.BudgetController);
    assert.notEqual(cjsRoot.BudgetExceededError, esmRoot.BudgetExceededError);
  });

  for (const [opener, wrapper] of [['esm', 'cjs'], ['cjs', 'esm']] as const) {
    it(`a scope opened through the ${opener.toUpperCase()} build reaches shared agents wrapped by the ${wrapper.toUpperCase()} build`, async () => {
      const open = opener === 'esm' ? esm : cjs;
      const wrap = wrapper === 'esm' ? esm : cjs;
      const model = new ScriptedModel([
        { output: [assistantMessage('one')], usage: usage(100, 20) },
        { output: [assistantMessage('two')], usage: usage(50, 10) },
      ]);
      // Module level in the dependency: wrapped once, no controller (shared by requests).
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model });
      wrap.budgetAgents(writer, {});
      assert.ok(writer.model instanceof wrap.ApportionModel);
      const c1 = controllerFor(1000);
      const c2 = controllerFor(700);
      const request = (c: BudgetController, input: string) =>
        open.runWithBudget(c, async () => {
          // Both copies see the scope's controller.
          assert.equal(esm.currentBudgetController(), c);
          assert.equal(cjs.currentBudgetController(), c);
          return (await new Runner({ tracingDisabled: true }).run(writer, input)).finalOutput;
        });
      const [a, b] = await Promise.all([request(c1, 'first'), request(c2, 'second')]);
      assert.deepEqual([a, b].sort(), ['one', 'two']);
      // Each request spent its own controller, capped by its own budget.
      assert.deepEqual([c1.state('writer').consumed, c2.state('writer').consumed].sort((x, y) => x - y), [60, 120]);
      assert.deepEqual(model.calls.map((c) => c.request.modelSettings.maxTokens).sort((x, y) => x! - y!), [700, 1000]);
      assert.equal(esm.currentBudgetController(), undefined);
      assert.equal(cjs.currentBudgetController(), undefined);
    });
  }

  const pairs: readonly (readonly [Build, Build])[] = [['esm', 'cjs'], ['cjs', 'esm']];

  for (const made of ['esm', 'cjs'] as const) {
    for (const [wrapper, hooker] of [...pairs, ['esm', 'esm'], ['cjs', 'cjs']] as const) {
      it(`over budget: hooks of the ${hooker.toUpperCase()} build finish an agent wrapped by the ${wrapper.toUpperCase()} build (controller of the ${made.toUpperCase()} build)`, async () => {
        const model = new ScriptedModel([{ output: [assistantMessage('too long')], usage: usage(300, 100) }]);
        const writer = new Agent({ name: 'writer', instructions: 'Write.', model });
        const controller = new builds[made].root.BudgetController(
          { budgets: { writer: { tokens: 250 }, editor: { tokens: 500 } }, unallocatedTokens: 0 },
          { agents: [{ name: 'writer', priority: 'standard' as const }, { name: 'editor', priority: 'standard' as const }] },
        );
        builds[wrapper].agents.budgetAgents(writer, { controller });
        const runner = new Runner({ tracingDisabled: true });
        const detach = builds[hooker].agents.attachBudgetHooks(runner, controller);
        // The run ends on the budget error (no agent_end): only the over-budget finish closes the agent.
        const err = await runner.run(writer, 'go').then(
          () => assert.fail('the run should reject'),
          (e: unknown) => e,
        );
        detach();
        assert.equal(controller.state('writer').status, 'finished', 'the hooks heard the model of the other build');
        assert.equal(controller.inFlight('writer'), 0);
        // What the app catches is one error type, whichever copy it imported it from.
        assert.ok(err instanceof esmRoot.BudgetExceededError, 'a BudgetExceededError of the ES module build');
        assert.ok(err instanceof cjsRoot.BudgetExceededError, 'a BudgetExceededError of the CommonJS build');
        assert.equal(err.scope, 'agent');
      });
    }
  }

  for (const [first, second] of pairs) {
    it(`budgetAgents of the ${second.toUpperCase()} build recognises agents the ${first.toUpperCase()} build wrapped: kept, never wrapped twice`, async () => {
      const model = new ScriptedModel([{ output: [assistantMessage('one')], usage: usage(100, 20) }]);
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model });
      // A dependency wraps its shared agents once (no controller); the app wraps them again with its request's.
      builds[first].agents.budgetAgents(writer, {});
      const wrapped = writer.model;
      const c = controllerFor(1000);
      builds[second].agents.budgetAgents(writer, { controller: c });
      assert.equal(writer.model, wrapped, 'kept: not wrapped in a second ApportionModel');
      assert.ok(wrapped instanceof esm.ApportionModel && wrapped instanceof cjs.ApportionModel, 'an ApportionModel of both builds');
      assert.equal((writer.model as esm.ApportionModel).inner, model);
      // Wrapped again with other span options: refused, as within one build.
      assert.throws(() => builds[second].agents.budgetAgents(writer, { controller: c, modelName: 'other' }), /already wrapped with another modelName/);
      const out = await builds[second].agents.runWithBudget(c, async () => (await new Runner({ tracingDisabled: true }).run(writer, 'go')).finalOutput);
      assert.equal(out, 'one');
      assert.equal(c.state('writer').consumed, 120, 'the call is spent once');
      assert.equal(model.calls[0]!.request.modelSettings.maxTokens, 1000);
    });

    it(`a model the ${first.toUpperCase()} build bound to one controller is shared once the ${second.toUpperCase()} build wraps it for another`, async () => {
      const model = new ScriptedModel([{ output: [assistantMessage('one')], usage: usage(100, 20) }]);
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model });
      const c1 = controllerFor(1000);
      const c2 = controllerFor(700);
      builds[first].agents.budgetAgents(writer, { controller: c1 });
      builds[second].agents.budgetAgents(writer, { controller: c2 });
      assert.equal((writer.model as esm.ApportionModel).fallbackController, undefined, 'bound to neither: a call outside a scope must not charge c1');
      await assert.rejects(new Runner({ tracingDisabled: true }).run(writer, 'go'), /has no BudgetController for this call/);
      assert.equal(model.calls.length, 0);
      assert.equal(c1.state('writer').consumed + c2.state('writer').consumed, 0);
    });
  }

  for (const [configurer, user] of pairs) {
    it(`the process-wide span recorder is one: configured through the ${configurer.toUpperCase()} build, models of the ${user.toUpperCase()} build record into it, in its sessions`, async () => {
      // A port nothing listens on: the spans stay buffered (nothing here flushes them but the exit flush, which fails).
      const s = createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      const { port } = s.address() as { port: number };
      await new Promise((r) => s.close(r));
      const recorder = builds[configurer].root.configureSpans({ url: `http://127.0.0.1:${port}`, flushIntervalMs: 0 });
      assert.equal(builds[user].root.defaultSpanRecorder(), recorder, 'both builds hand out the recorder configured');
      const model = new ScriptedModel([{ output: [assistantMessage('one')], usage: usage(100, 20) }]);
      const writer = new Agent({ name: 'writer', instructions: 'Write.', model });
      builds[user].agents.budgetAgents(writer, {});
      const c = controllerFor(1000);
      const decisionId = `dual-${configurer}`;
      await builds[configurer].root.withSession({ sessionId: `s-${configurer}`, decisionId }, () =>
        builds[configurer].agents.runWithBudget(c, () => new Runner({ tracingDisabled: true }).run(writer, 'go')),
      );
      assert.deepEqual(recorder.usageFor(decisionId), { writer: { inputTokens: 100, outputTokens: 20 } }, "the call's span is in the configured recorder, in the session opened through the other build");
    });
  }
});
