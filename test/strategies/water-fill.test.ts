import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { roundToTarget, roundToTargetReference, waterFill, waterFillColumns, waterFillReference, type FitAgent } from '../../packages/sdk/src/water-fill.js';

/**
 * The budget arithmetic's fast path (scratch columns, insertion sorts) against the reference implementation it
 * replaced: the same numbers, bit for bit (Object.is), or the same error, for any input, edge cases included.
 */

const weight = fc.oneof(
  fc.constant(0),
  fc.constant(1),
  fc.constant(Infinity),
  fc.constant(Number.NaN),
  fc.constant(1e-13),
  fc.double({ min: 0, max: 1e300, noNaN: true }),
  fc.double({ min: 0, max: 10, noNaN: true }),
  fc.integer({ min: 0, max: 50_000 }),
);
const agent: fc.Arbitrary<FitAgent> = fc
  .record({
    min: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.double({ min: 0, max: 5000, noNaN: true })),
    cap: fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 20_000 }), fc.double({ min: 0, max: 20_000, noNaN: true })),
    weight,
  });
const problem = fc.record({
  agents: fc.array(agent, { minLength: 0, maxLength: 40 }),
  total: fc.oneof(fc.integer({ min: 0, max: 400_000 }), fc.double({ min: 0, max: 400_000, noNaN: true })),
  slack: fc.boolean(),
});

function outcome(f: () => number[]): { ok: number[] } | { error: string } {
  try {
    return { ok: f() };
  } catch (e) {
    return { error: String(e) };
  }
}

function same(a: { ok: number[] } | { error: string }, b: { ok: number[] } | { error: string }): void {
  if ('error' in a || 'error' in b) {
    assert.deepEqual(a, b);
    return;
  }
  assert.equal(a.ok.length, b.ok.length);
  a.ok.forEach((v, i) => assert.ok(Object.is(v, b.ok[i]), `index ${i}: ${v} vs ${b.ok[i]}`));
}

describe('waterFill fast path', () => {
  it('gives the reference implementation’s budgets bit for bit, or its error', () => {
    fc.assert(
      fc.property(problem, ({ agents, total, slack }) => {
        // Usually a feasible total (at least the minimums), sometimes any.
        const minSum = agents.reduce((s, a) => s + a.min, 0);
        const t = slack ? minSum + total : total;
        const want = outcome(() => waterFillReference(agents, t));
        same(outcome(() => waterFill(agents, t)), want);
        same(
          outcome(() => waterFillColumns(agents.map((a) => a.min), agents.map((a) => a.cap), agents.map((a) => a.weight), agents.length, t)),
          want,
        );
      }),
      { numRuns: 10_000 },
    );
  });

  it('rounds like the reference, non-finite values included', () => {
    const value = fc.oneof(fc.double({ min: -10, max: 50_000, noNaN: false }), fc.constant(Infinity), fc.integer({ min: 0, max: 9000 }));
    fc.assert(
      fc.property(fc.array(fc.tuple(value, fc.integer({ min: 0, max: 100 }), fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 60_000 }))), { maxLength: 30 }), fc.integer({ min: -100, max: 200_000 }), (rows, target) => {
        const real = rows.map((r) => r[0]);
        const mins = rows.map((r) => r[1]);
        const caps = rows.map((r) => Math.max(r[1], r[2]));
        same(outcome(() => roundToTarget(real, mins, caps, target)), outcome(() => roundToTargetReference(real, mins, caps, target)));
      }),
      { numRuns: 10_000 },
    );
  });

  it('keeps no state between calls (a large problem, then a small one)', () => {
    const big = Array.from({ length: 300 }, (_, i) => ({ min: i % 7, cap: i % 3 === 0 ? Infinity : 50 + i, weight: (i * 37) % 11 }));
    same(outcome(() => waterFill(big, 40_000)), outcome(() => waterFillReference(big, 40_000)));
    const small = [
      { min: 10, cap: 100, weight: 1 },
      { min: 0, cap: Infinity, weight: 3 },
    ];
    assert.deepEqual(waterFill(small, 1000), waterFillReference(small, 1000));
    assert.deepEqual(waterFill(small, 1000), [100, 900]); // the first agent stops at its cap
  });
});
