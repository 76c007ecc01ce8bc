import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { PipelineBody } from '../../src/pipelines/schema.js';
import { runStrategy } from '../helpers/strategies.js';

const priority = fc.constantFrom('critical', 'standard', 'background');

/** Random pipelines: 1–12 agents, optional min/max (max ≥ min), and a total ≥ the sum of minimums. */
const world = fc
  .array(
    fc.record({
      min: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: undefined }),
      extra: fc.option(fc.integer({ min: 0, max: 20000 }), { nil: undefined }),
      priority,
      share: fc.double({ min: 0, max: 10, noNaN: true }),
      need: fc.integer({ min: 0, max: 30000 }),
      base: fc.double({ min: 0, max: 5000, noNaN: true }),
      perMsg: fc.double({ min: 0, max: 300, noNaN: true }),
    }),
    { minLength: 1, maxLength: 12 },
  )
  .chain((rows) => {
    const minSum = rows.reduce((s, r) => s + (r.min ?? 0), 0);
    return fc.record({
      rows: fc.constant(rows),
      total: fc.integer({ min: Math.max(1, minSum), max: minSum + 200_000 }),
      messages: fc.integer({ min: 0, max: 200 }),
      // A task value may be any string a caller sends, the names every object inherits included.
      task: fc.constantFrom('refund', 'other', 'constructor', 'toString', '__proto__', 'valueOf', 'hasOwnProperty'),
    });
  });

function agentsOf(rows: { min?: number | undefined; extra?: number | undefined; priority: string }[]): PipelineBody['agents'] {
  return rows.map((r, i) => ({
    name: `a${i}`,
    priority: r.priority as 'critical',
    ...(r.min !== undefined ? { minTokens: r.min } : {}),
    ...(r.extra !== undefined ? { maxTokens: Math.max(1, (r.min ?? 0) + r.extra) } : {}),
  }));
}

function paramsFor(kind: string, rows: { share: number; need: number; base: number; perMsg: number }[]): Record<string, unknown> {
  const by = <T>(f: (r: (typeof rows)[number]) => T) => Object.fromEntries(rows.map((r, i) => [`a${i}`, f(r)]));
  switch (kind) {
    case 'static': {
      const shares = by((r) => r.share);
      if (!Object.values(shares).some((v) => v > 0)) shares.a0 = 1;
      return { shares };
    }
    case 'estimate':
      return { margin: 1.2, agents: by((r) => ({ base: r.base, per: { messageCount: r.perMsg }, task: { refund: 1.5 } })) };
    case 'priority-pool':
      return { needs: by((r) => r.need) };
    default:
      return {};
  }
}

for (const kind of ['uniform', 'static', 'estimate', 'priority-pool']) {
  describe(`${kind} properties`, () => {
    it('integer budgets within min/max whose sum never exceeds the total, deterministic', () => {
      fc.assert(
        fc.property(world, ({ rows, total, messages, task }) => {
          const agents = agentsOf(rows);
          const params = paramsFor(kind, rows);
          const features = { messageCount: messages, taskType: task };
          const out = runStrategy(kind, agents, params, features, total);
          let sum = 0;
          for (const a of agents) {
            const t = out[a.name]!;
            assert.ok(Number.isInteger(t), `${a.name} budget ${t} is not an integer`);
            assert.ok(t >= (a.minTokens ?? 0), `${a.name} budget ${t} below min ${a.minTokens}`);
            if (a.maxTokens !== undefined) assert.ok(t <= a.maxTokens, `${a.name} budget ${t} above max ${a.maxTokens}`);
            sum += t;
          }
          assert.ok(sum <= total, `sum ${sum} exceeds total ${total}`);
          assert.deepEqual(runStrategy(kind, agents, params, features, total), out);
          // A task no agent names (whatever its spelling) multiplies nothing: the same split as any other unnamed task.
          if (task !== 'refund') assert.deepEqual(out, runStrategy(kind, agents, params, { ...features, taskType: 'other' }, total), `task "${task}"`);
        }),
        { numRuns: 300, seed: 20261123 },
      );
    });
  });
}

describe('uniform uses the whole total whenever the caps allow it', () => {
  it('sum = min(total, Σ max)', () => {
    fc.assert(
      fc.property(world, ({ rows, total }) => {
        const agents = agentsOf(rows);
        const out = runStrategy('uniform', agents, {}, {}, total);
        const capSum = agents.reduce((s, a) => s + (a.maxTokens ?? Infinity), 0);
        const sum = Object.values(out).reduce((s, v) => s + v, 0);
        assert.equal(sum, Math.min(total, capSum));
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});
