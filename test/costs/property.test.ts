import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { calcPrice } from '@pydantic/genai-prices';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('costs-prop');
let rt: Running;

const call = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
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

/**
 * Independent reference. A span carrying usage/cost with no carrying descendant is a leaf, counted whole. One with
 * carrying descendants is an aggregate ("claimed"): its descendants are counted, and so is what it holds beyond them
 * — per token field max(0, own − descendants), priced like the span (a provided aggregate cost split in the
 * proportion of the computed prices; a cost-only aggregate: what exceeds its descendants' cost). So a partial set of children never makes the total smaller than the aggregate.
 */
function expectedCost(spans: readonly GenSpan[], at: number): { costNano: number; tokens: number; calls: number; leaves: number } {
  const carries = spans.map((s) => s.usage !== null || s.cost !== null);
  const below = spans.map(() => false);
  const priceOf = (u: { input: number; output: number; cacheRead: number }, model: number) => {
    const r = calcPrice({ input_tokens: u.input, output_tokens: u.output, cache_read_tokens: u.cacheRead }, MODELS[model]!, { timestamp: new Date(at) });
    return r ? Math.round(r.total_price * 1e9) : undefined;
  };
  const ownCost = spans.map((s) => (s.cost !== null ? s.cost : s.usage ? priceOf(s.usage, s.model) : undefined));
  // Per span: what its subtree counts (tokens, cost, whether some counted part is unpriced).
  const sub = spans.map(() => ({ input: 0, output: 0, cacheRead: 0, cost: 0, unpriced: false }));
  let calls = 0;
  let pieces = 0;
  for (let i = spans.length - 1; i >= 0; i--) {
    const s = spans[i]!;
    const t = sub[i]!;
    if (carries[i]) {
      pieces++;
      const own = ownCost[i];
      if (!below[i]) {
        calls++;
        if (s.usage) {
          t.input += s.usage.input;
          t.output += s.usage.output;
          t.cacheRead += s.usage.cacheRead;
        }
        if (own !== undefined) t.cost += own;
        else if (s.usage) t.unpriced = true;
      } else {
        const u = s.usage;
        const rest = u ? { input: Math.max(0, u.input - t.input), output: Math.max(0, u.output - t.output), cacheRead: 0 } : { input: 0, output: 0, cacheRead: 0 };
        if (u) rest.cacheRead = Math.min(rest.input, Math.max(0, u.cacheRead - t.cacheRead));
        const any = rest.input + rest.output > 0;
        let cost = 0;
        if (own !== undefined) {
          if (u && any) {
            const restPrice = priceOf(rest, s.model);
            const whole = priceOf(u, s.model);
            if (s.cost === null) cost = restPrice!;
            else if (whole !== undefined && whole > 0 && restPrice !== undefined) cost = Math.round((own * restPrice) / whole);
            else cost = Math.round((own * (rest.input + rest.output)) / (u.input + u.output));
          } else if (!u && !t.unpriced) cost = Math.max(0, own - t.cost);
        } else if (any) t.unpriced = true;
        t.input += rest.input;
        t.output += rest.output;
        t.cacheRead += rest.cacheRead;
        t.cost += cost;
      }
    }
    const p = s.parent;
    if (p >= 0) {
      if (carries[i] || below[i]) below[p] = true;
      const pt = sub[p]!;
      pt.input += t.input;
      pt.output += t.output;
      pt.cacheRead += t.cacheRead;
      pt.cost += t.cost;
      pt.unpriced ||= t.unpriced;
    }
  }
  let costNano = 0;
  let tokens = 0;
  spans.forEach((s, i) => {
    if (s.parent >= 0) return;
    costNano += sub[i]!.cost;
    tokens += sub[i]!.input + sub[i]!.output;
  });
  return { costNano, tokens, calls, leaves: pieces };
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
        // 1. the session total is the sum of its counted spans' own costs (leaves, and what aggregates hold beyond
        //    their children)
        const leafSum = t.nodes.reduce((a: number, n: any) => a + ((n.role === 'leaf' || n.role === 'claimed') && n.selfCostNano !== null ? n.selfCostNano : 0), 0);
        assert.equal(t.total.costNano, leafSum);
        // and every root's subtree adds up to the same total
        const rootSum = t.nodes.filter((n: any) => !n.parentSpanId || n.orphan).reduce((a: number, n: any) => a + n.subtree.costNano, 0);
        assert.equal(rootSum, t.total.costNano);
        // 2. it matches an independent reference (catalog prices per counted span; ±1 nano rounding each)
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

/** The customer's row of a one-day showback report, as tokens and cost. */
async function customerRow(customer: string, day: string): Promise<{ costNano: number; tokens: number } | undefined> {
  const r = (await call('GET', `/v1/reports/costs?groupBy=customer&from=${day}&to=${day}`)).json();
  const row = r.rows.find((x: { key: string }) => x.key === customer);
  return row ? { costNano: row.costNano, tokens: row.tokens.total } : undefined;
}

describe('cost trees and showback agree', () => {
  it('after a price override: both keep the prices the trace was summed with, and both move when it is re-sent', async () => {
    let run = 0;
    const rate = fc.integer({ min: 1, max: 40_000 }).map((c) => c / 1000); // USD per million tokens
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ input: fc.integer({ min: 1, max: 400_000 }), output: fc.integer({ min: 0, max: 100_000 }), model: fc.constantFrom('gpt-4o', 'gpt-4o-mini') }), { minLength: 1, maxLength: 6 }),
        fc.record({ inputMTok: rate, outputMTok: rate }),
        fc.boolean(),
        async (calls, price, overrideFirst) => {
          run++;
          const customer = `ovp-${run}`;
          const session = `ovp-s-${run}`;
          const day = '2025-07-02';
          const at = Date.parse(`${day}T09:00:00Z`);
          const spans = [
            { traceId: `ovp-${run}`, spanId: 'root', sessionId: session, customer, agent: 'coordinator', kind: 'agent', start: at, end: at + 100 },
            ...calls.map((c, i) => ({ traceId: `ovp-${run}`, spanId: `c${i}`, parentSpanId: 'root', agent: 'worker', model: c.model, provider: 'openai', usage: { input: c.input, output: c.output }, start: at + i + 1, end: at + i + 2 })),
          ];
          const agree = async () => {
            const t = (await call('GET', `/v1/sessions/${session}/cost-tree`)).json();
            const row = await customerRow(customer, day);
            assert.deepEqual(row, { costNano: t.total.costNano, tokens: t.total.tokens.total }, 'the session’s tree and the customer’s showback row');
            return t.total.costNano as number;
          };
          const setOverride = async () => {
            const put = await call('PUT', `/v1/price-overrides/${customer}`, { models: calls.map((c) => ({ model: c.model, ...price })) });
            assert.equal(put.statusCode, 200, put.body);
          };
          if (overrideFirst) await setOverride();
          assert.equal((await call('POST', '/v1/spans', { spans })).statusCode, 200);
          const summed = await agree();
          if (!overrideFirst) {
            await setOverride();
            assert.equal(await agree(), summed, 'an override set later does not reprice the stored trace on one side only');
          }
          // Re-sending the trace applies the override to both.
          assert.equal((await call('POST', '/v1/spans', { spans })).statusCode, 200);
          const repriced = await agree();
          const exact = calls.reduce((a, c) => a + Math.round((c.input * price.inputMTok + c.output * price.outputMTok) * 1000), 0);
          assert.ok(Math.abs(repriced - exact) <= calls.length, `priced with the override: ${repriced} vs ${exact}`);
          assert.equal((await call('DELETE', `/v1/price-overrides/${customer}`)).statusCode, 200);
        },
      ),
      { numRuns: 15, seed: 20261201 },
    );
  });

  it('children of an aggregate that arrive a few at a time never make the total smaller than the aggregate', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ input: fc.integer({ min: 1, max: 50_000 }), output: fc.integer({ min: 0, max: 5_000 }) }), { minLength: 2, maxLength: 8 }),
        fc.array(fc.nat(3), { minLength: 8, maxLength: 8 }),
        async (children, batchOf) => {
          run++;
          const traceId = `agg-${run}`;
          const session = `agg-s-${run}`;
          const customer = `agg-c-${run}`;
          const day = '2025-07-03';
          const at = Date.parse(`${day}T09:00:00Z`);
          const input = children.reduce((a, c) => a + c.input, 0);
          const output = children.reduce((a, c) => a + c.output, 0);
          // The agent span reports the aggregate of its calls; its calls arrive later, in up to four batches.
          const parent = { traceId, spanId: 'agent', sessionId: session, customer, agent: 'researcher', kind: 'agent', model: 'gpt-4o', provider: 'openai', usage: { input, output }, start: at, end: at + 100 };
          const kids = children.map((c, i) => ({ traceId, spanId: `call-${i}`, parentSpanId: 'agent', agent: 'researcher', model: 'gpt-4o', provider: 'openai', usage: c, start: at + i + 1, end: at + i + 2 }));
          assert.equal((await call('POST', '/v1/spans', { spans: [parent] })).statusCode, 200);
          const whole = (await call('GET', `/v1/sessions/${session}/cost-tree`)).json().total;
          assert.equal(whole.tokens.total, input + output);
          for (let b = 0; b < 4; b++) {
            const batch = kids.filter((_, i) => batchOf[i] === b);
            if (batch.length === 0) continue;
            assert.equal((await call('POST', '/v1/spans', { spans: batch })).statusCode, 200);
            const t = (await call('GET', `/v1/sessions/${session}/cost-tree`)).json();
            assert.equal(t.total.tokens.total, input + output, 'the aggregate still counts whole');
            assert.ok(Math.abs(t.total.costNano - whole.costNano) <= children.length + 1, `cost ${t.total.costNano} vs the aggregate's ${whole.costNano}`);
            assert.equal(t.total.calls, kids.filter((_, i) => batchOf[i]! <= b).length, 'calls are the calls that arrived');
            assert.deepEqual(await customerRow(customer, day), { costNano: t.total.costNano, tokens: t.total.tokens.total }, 'the showback row moves with the tree');
          }
        },
      ),
      { numRuns: 15, seed: 20261202 },
    );
  });
});
