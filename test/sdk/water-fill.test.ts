import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { waterFill as sdkWaterFill } from '../../packages/sdk/src/water-fill.js';
import { waterFill } from '../../src/strategies/fit.js';

/** The SDK carries its own copy of the server's waterFill (the BudgetController redistributes with it). */
describe('the SDK copy of waterFill', () => {
  it('gives the server’s budgets on random agents and totals (fast-check, seeded)', () => {
    const agent = fc.record({
      min: fc.integer({ min: 0, max: 2000 }),
      cap: fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 50_000 })),
      weight: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1e6, noNaN: true }), fc.integer({ min: 1, max: 10 })),
    });
    fc.assert(
      fc.property(fc.array(agent, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 200_000 }), (agents, extra) => {
        const total = agents.reduce((s, a) => s + a.min, 0) + extra;
        assert.deepEqual(sdkWaterFill(agents, total), waterFill(agents, total));
      }),
      { seed: 17, numRuns: 2000 },
    );
  });
});
