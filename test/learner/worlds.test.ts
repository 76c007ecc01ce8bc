import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../../src/learner/rng.js';
import { expectedQuality, loadWorld, oracleBudgets, sampleContext, truthOf, uniformBudgets, WORLD_NAMES } from '../../src/learner/sim/world.js';

describe('simulated worlds (experiments/worlds)', () => {
  for (const name of WORLD_NAMES) {
    it(`${name}: a well-formed world whose oracle is feasible and never below uniform`, () => {
      const world = loadWorld(name);
      assert.equal(world.name, name);
      assert.ok(Math.abs(Object.values(world.tasks).reduce((s, v) => s + v, 0) - 1) < 1e-9, 'task shares sum to 1');
      for (const a of world.agents) {
        assert.ok(world.truth[a.name], `truth for ${a.name}`);
        assert.ok(a.minTokens <= a.maxTokens, `${a.name}: min ≤ max`);
      }
      assert.ok(world.agents.reduce((s, a) => s + a.minTokens, 0) <= world.totalTokens, 'the minimums fit in the total');
      const rng = mulberry32(5);
      for (let i = 0; i < 100; i++) {
        const x = sampleContext(world, rng);
        for (const phase of world.drift ? ([0, 1] as const) : ([0] as const)) {
          const o = oracleBudgets(world, phase, x, world.totalTokens);
          assert.ok(o.reduce((s, v) => s + v, 0) <= world.totalTokens + 1e-6, 'the oracle stays within the total');
          o.forEach((b, j) => assert.ok(b >= world.agents[j]!.minTokens - 1e-6 && b <= world.agents[j]!.maxTokens + 1e-6, `oracle within ${world.agents[j]!.name}'s bounds`));
          const qo = expectedQuality(world, phase, x, o);
          assert.ok(qo >= expectedQuality(world, phase, x, uniformBudgets(world, world.totalTokens)) - 1e-9, 'oracle ≥ uniform');
          assert.ok(truthOf(world, phase, x).need.every((n) => n >= 1));
        }
      }
    });
  }

  it('uneven-needs: uniform starves the reasoner on long threads and over-provisions the formatter, as the world says', () => {
    const world = loadWorld('uneven-needs');
    const uni = uniformBudgets(world, world.totalTokens);
    assert.deepEqual(uni, [4000, 4000, 4000, 4000, 4000]);
    const long = { taskType: 'qa', messageCount: 40, documentTokens: 2000, tier: 'pro', sessionAge: 60 };
    const { need } = truthOf(world, 0, long);
    const at = (agent: string) => need[world.agents.findIndex((a) => a.name === agent)]!;
    // An agent uses up to 1.3 × its need (simulateOutcome): the reasoner would use ~8,000, the formatter ~200.
    assert.ok(at('reasoner') * 1.3 > 7000 && at('reasoner') * 1.3 < 9000, `reasoner ${at('reasoner')}`);
    assert.ok(at('formatter') * 1.3 < 250, `formatter ${at('formatter')}`);
  });
});
