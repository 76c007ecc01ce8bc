import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { BudgetController } from '@apportion/sdk';
import * as esm from '@apportion/sdk/openai-agents';
import { Agent, Runner, setTracingDisabled, Usage } from '@openai/agents';
import { assistantMessage, ScriptedModel } from '@openai/agents/testing';

/**
 * The dual package hazard: one process loads the SDK's ES module build (the app's `import`) and its CommonJS build
 * (a dependency's `require`). Two copies of the integration module, so two of everything module-level in it; the
 * runWithBudget scope must still be one, or shared agents defined through one copy never see the controller of a
 * scope opened through the other (and refuse every call, or charge the controller they were built with).
 * Runs against the built package (packages/sdk/dist: `npm run build -w @apportion/sdk`), both of its builds.
 */
setTracingDisabled(true);
const cjs = createRequire(import.meta.url)('@apportion/sdk/openai-agents') as typeof esm;

const usage = (inputTokens: number, outputTokens: number) => new Usage({ requests: 1, inputTokens, outputTokens, totalTokens: inputTokens + outputTokens });
const controllerFor = (tokens: number) => new BudgetController({ budgets: { writer: { tokens } }, unallocatedTokens: 0 }, { agents: [{ name: 'writer', priority: 'standard' as const }] });

describe('SDK loaded as ES module and as CommonJS in one process: one runWithBudget scope', () => {
  it('the two builds are separate copies (the hazard this guards against is real here)', () => {
    assert.equal(typeof cjs.runWithBudget, 'function');
    assert.notEqual(cjs.ApportionModel, esm.ApportionModel);
    assert.notEqual(cjs.runWithBudget, esm.runWithBudget);
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
});
