import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { calcPrice } from '@pydantic/genai-prices';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('costs-prop');
let rt: Running;

const call = (method: 'GET' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

before(async () => {
  rt = await startTest(prefix);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const MODELS = ['gpt-4o', 'gpt-4o-mini', 'claude-3-5-haiku-latest', 'no-such-model-x'];
const AGENTS = ['coordinator', 'researcher', 'writer', 'critic'];

interface GenSpan {
  parent: number; // -1 root, -2 a parent that never arrives
  usage: { input: number; output: number; cacheRead: number } | null;
  cost: number | null;
  model: number;
  agent: number;
  error: boolean;
}

const genSpan = fc.record({
  parentPick: fc.nat(),
  orphan: fc.integer({ min: 0, max: 19 }),
  usage: fc.option(fc.record({ input: fc.integer({ min: 0, max: 50_000 }), output: fc.integer({ min: 0, max: 5_000 }), cachePct: fc.integer({ min: 0, max: 100 }) }), { nil: null }),
  cost: fc.option(fc.integer({ min: 0, max: 2_000_000 }), { nil: null, freq: 6 }),
  model: fc.integer({ min: 0, max: MODELS.length - 1 }),
  agent: fc.integer({ min: 0, max: AGENTS.length - 1 }),
  error: fc.boolean(),
});

const genTree = fc
  .array(genSpan, { minLength: 1, maxLength: 30 })
  .map((raw): GenSpan[] =>
    raw.map((r, i) => ({
      parent: i === 0 ? -1 : r.orphan === 0 ? -2 : r.parentPick % i,
      usage: r.usage ? { input: r.usage.input, output: r.usage.output, cacheRead: Math.floor((r.usage.input * r.usage.cachePct) / 100) } : null,
      cost: r.cost,
      model: r.model,
      agent: r.agent,
      error: r.error,
    })),
  );

const DIMS = ['customer', 'team', 'agent', 'model', 'day'] as const;
const DAY = '2025-06-21';

async function totals(): Promise<Record<string, { costNano: number; tokens: number; calls: number }>> {
  const out: Record<string, { costNano: number; tokens: number; calls: number }> = {};
  for (const d of DIMS) {
    const r = (await call('GET', `/v1/reports/costs?groupBy=${d}&from=${DAY}&to=${DAY}`)).json();
    out[d] = { costNano: r.total.costNano, tokens: r.total.tokens.total, calls: r.total.calls };
  }
  return out;
}

/** Independent reference: a span is counted iff it carries usage/cost and no descendant does. */
function expectedCost(spans: readonly GenSpan[], at: number): { costNano: number; tokens: number; calls: number; leaves: number } {
  const carries = spans.map((s) => s.usage !== null || s.cost !== null);
  const below = spans.map(() => false);
  for (let i = spans.length - 1; i >= 0; i--) {
    const p = spans[i]!.parent;
    if (p >= 0 && (carries[i] || below[i])) below[p] = true;
  }
  let costNano = 0;
  let tokens = 0;
  let calls = 0;
  spans.forEach((s, i) => {
    if (!carries[i] || below[i]) return;
    calls++;
    if (s.usage) tokens += s.usage.input + s.usage.output;
    if (s.cost !== null) costNano += s.cost;
    else if (s.usage) {
      const r = calcPrice({ input_tokens: s.usage.input, output_tokens: s.usage.output, cache_read_tokens: s.usage.cacheRead }, MODELS[s.model]!, { timestamp: new Date(at) });
      if (r) costNano += Math.round(r.total_price * 1e9);
    }
  });
  return { costNano, tokens, calls, leaves: calls };
}

describe('cost property', () => {
  it('for random trees sent in random order, leaf costs = session total = every rollup', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(genTree, fc.array(fc.nat(), { minLength: 30, maxLength: 30 }), fc.integer({ min: 1, max: 4 }), async (tree, order, nBatches) => {
        run++;
        const traceId = `prop-${run}`;
        const session = `${traceId}-s`;
        const at = Date.parse(`${DAY}T12:00:00Z`);
        const spans = tree.map((s, i) => ({
          traceId,
          spanId: `s${i}`,
          ...(s.parent >= 0 ? { parentSpanId: `s${s.parent}` } : s.parent === -2 ? { parentSpanId: 'never-arrives' } : {}),
          ...(i === 0 ? { sessionId: session, customer: `cust-${run % 3}`, team: `team-${run % 2}` } : {}),
          agent: AGENTS[s.agent]!,
          model: MODELS[s.model]!,
          kind: s.usage || s.cost !== null ? 'llm' : 'agent',
          ...(s.usage ? { usage: s.usage } : {}),
          ...(s.cost !== null ? { costUsd: s.cost / 1e9 } : {}),
          status: s.error ? 'error' : 'ok',
          start: at + i,
          end: at + i + 1,
        }));
        // Random arrival order (children may come before parents), random batches, one batch replayed.
        const shuffled = spans.map((s, i) => ({ s, k: order[i % order.length]! * 31 + i })).sort((a, b) => a.k - b.k).map((x) => x.s);
        const size = Math.ceil(shuffled.length / nBatches);
        const batches: unknown[][] = [];
        for (let i = 0; i < shuffled.length; i += size) batches.push(shuffled.slice(i, i + size));
        const before = await totals();
        for (const b of [...batches, batches[0]!]) {
          const r = await call('POST', '/v1/spans', { spans: b });
          assert.equal(r.statusCode, 200, r.body);
          assert.deepEqual(r.json().rejected, []);
        }
        const t = (await call('GET', `/v1/sessions/${session}/cost-tree`)).json();
        // 1. the session total is the sum of its counted leaves' own costs
        const leafSum = t.nodes.reduce((a: number, n: any) => a + (n.role === 'leaf' && n.selfCostNano !== null ? n.selfCostNano : 0), 0);
        assert.equal(t.total.costNano, leafSum);
        // and every root's subtree adds up to the same total
        const rootSum = t.nodes.filter((n: any) => !n.parentSpanId || n.orphan).reduce((a: number, n: any) => a + n.subtree.costNano, 0);
        assert.equal(rootSum, t.total.costNano);
        // 2. it matches an independent reference (catalog prices per leaf; ±1 nano rounding per leaf)
        const exp = expectedCost(tree, at);
        assert.equal(t.total.tokens.total, exp.tokens);
        assert.equal(t.total.calls, exp.calls);
        assert.ok(Math.abs(t.total.costNano - exp.costNano) <= exp.leaves, `cost ${t.total.costNano} vs reference ${exp.costNano}`);
        // 3. every rollup moved by exactly the session total
        const afterT = await totals();
        for (const d of DIMS) {
          assert.equal(afterT[d]!.costNano - before[d]!.costNano, t.total.costNano, `rollup ${d} cost`);
          assert.equal(afterT[d]!.tokens - before[d]!.tokens, t.total.tokens.total, `rollup ${d} tokens`);
          assert.equal(afterT[d]!.calls - before[d]!.calls, t.total.calls, `rollup ${d} calls`);
        }
      }),
      { numRuns: 40, seed: 20261123 },
    );
  });
});
