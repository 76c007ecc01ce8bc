import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { calcPrice } from '@pydantic/genai-prices';
import type { LightMyRequestResponse } from 'fastify';
import { costKeys } from '../../src/costs/keys.js';
import { encodeSpan } from '../../src/costs/span.js';
import { runScript } from '../../src/redis/scripts.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('costs-fixtures');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

interface Fixture {
  spans?: unknown[];
  batches?: unknown[][];
}
const fixture = (name: string): Fixture => JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')) as Fixture;

/** Expected cost straight from the catalog (independent of the service's cached linear rates). */
function nano(model: string, provider: string, at: string, u: { input: number; output: number; cacheRead?: number; cacheWrite?: number }): number {
  const r = calcPrice(
    { input_tokens: u.input, output_tokens: u.output, ...(u.cacheRead ? { cache_read_tokens: u.cacheRead } : {}), ...(u.cacheWrite ? { cache_write_tokens: u.cacheWrite } : {}) },
    model,
    { providerId: provider, timestamp: new Date(at) },
  );
  assert.ok(r, `catalog prices ${model}`);
  return Math.round(r.total_price * 1e9);
}

async function ingest(spans: unknown[]) {
  const res = await call('POST', '/v1/spans', { spans });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as { accepted: number; duplicates: number; rejected: { index: number; reason: string }[] };
}

async function tree(session: string) {
  const res = await call('GET', `/v1/sessions/${session}/cost-tree`);
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

async function report(groupBy: string, day = '2025-06-20') {
  const res = await call('GET', `/v1/reports/costs?groupBy=${groupBy}&from=${day}&to=${day}`);
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as { rows: { key: string; costNano: number; calls: number; tokens: { total: number }; unpricedCalls: number }[] };
}

const row = (r: Awaited<ReturnType<typeof report>>, key: string) => r.rows.find((x) => x.key === key);

before(async () => {
  rt = await startTest(prefix);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('cost fixtures', () => {
  it('double count: an agent span with aggregate usage is claimed, not added on top of its calls', async () => {
    const r = await ingest(fixture('double-count').spans!);
    assert.deepEqual(r, { accepted: 7, duplicates: 0, rejected: [] });
    const t = await tree('dc-session');
    const at = '2025-06-20T10:00:00Z';
    // The writer's aggregate (6,000 tokens) is more than its one arrived call (3,000): the unreported half of it
    // stays counted, as the writer's own, instead of the smaller sum replacing the aggregate.
    const writerUnreported = nano('gpt-4o-mini', 'openai', at, { input: 2500, output: 500 });
    const expected =
      nano('gpt-4o', 'openai', at, { input: 1000, output: 200 }) +
      nano('gpt-4o', 'openai', at, { input: 2000, output: 400 }) +
      nano('gpt-4o-mini', 'openai', at, { input: 2500, output: 500 }) +
      writerUnreported +
      nano('gpt-4o', 'openai', at, { input: 4000, output: 800 });
    assert.equal(t.total.costNano, expected);
    assert.equal(t.total.tokens.total, 1200 + 2400 + 3000 + 3000 + 4800);
    assert.equal(t.total.calls, 4);
    const researcher = t.nodes.find((n: { spanId: string }) => n.spanId === 'researcher');
    assert.equal(researcher.role, 'claimed');
    assert.equal(researcher.selfCostNano, 0);
    assert.equal(researcher.claim.tokens, 3600);
    assert.equal(researcher.claim.childTokens, 3600);
    assert.equal(researcher.claim.disagrees, false);
    assert.equal(researcher.subtree.costNano, nano('gpt-4o', 'openai', at, { input: 1000, output: 200 }) + nano('gpt-4o', 'openai', at, { input: 2000, output: 400 }));
    // The writer claims 6000 tokens but its one call shows 3000: flagged, and the other 3000 count as its own.
    const writer = t.nodes.find((n: { spanId: string }) => n.spanId === 'writer');
    assert.equal(writer.role, 'claimed');
    assert.equal(writer.claim.disagrees, true);
    assert.equal(writer.selfCostNano, writerUnreported);
    assert.equal(writer.subtree.tokens.total, 6000);
    assert.deepEqual(t.claims, { count: 2, disagreeing: 1 });
    const root = t.nodes.find((n: { spanId: string }) => n.spanId === 'root');
    assert.equal(root.subtree.costNano, expected);
    assert.equal(root.children.length, 3);
    // Coordinator overhead: its own calls (synth) over the session.
    assert.equal(t.coordinator.agent, 'coordinator');
    assert.equal(t.coordinator.costNano, nano('gpt-4o', 'openai', at, { input: 4000, output: 800 }));
    assert.ok(Math.abs(t.coordinator.overhead - t.coordinator.costNano / expected) < 1e-12);
    assert.deepEqual(
      t.byLevel.map((b: { key: string }) => b.key),
      ['0', '1'],
    );
    // Task branches: each subtree under the root; the root's own calls apart.
    const branches = Object.fromEntries(t.byTask.map((b: { key: string; tokens: { total: number } }) => [b.key, b.tokens.total]));
    assert.deepEqual(branches, { 'researcher#researcher': 3600, 'writer#writer': 6000, 'coordinator#synth': 4800 });
    // Rollups: the same leaves, whichever dimension.
    assert.equal(row(await report('customer'), 'dc-customer')!.costNano, expected);
    assert.equal(row(await report('team'), 'dc-team')!.tokens.total, 14_400);
  });

  it('a replayed batch changes nothing (idempotent on traceId + spanId)', async () => {
    const before = row(await report('customer'), 'dc-customer')!;
    const r = await ingest(fixture('double-count').spans!);
    assert.deepEqual(r, { accepted: 0, duplicates: 7, rejected: [] });
    assert.deepEqual(row(await report('customer'), 'dc-customer'), before);
  });

  it('cache tokens: input includes cache reads and writes; a span claiming more cache than input is rejected alone', async () => {
    const r = await ingest(fixture('cache-tokens').spans!);
    assert.equal(r.accepted, 2);
    assert.equal(r.rejected.length, 1);
    assert.equal(r.rejected[0]!.index, 2);
    assert.match(r.rejected[0]!.reason, /body\/spans\/2\/usage\/cacheRead \+ cacheWrite \(500\) exceed input \(100\)/);
    const t = await tree('ct-session');
    const at = '2025-06-20T11:00:00Z';
    const a = nano('gpt-4o', 'openai', at, { input: 10000, output: 100, cacheRead: 8000 });
    const b = nano('claude-sonnet-4-20250514', 'anthropic', at, { input: 6000, output: 300, cacheRead: 1000, cacheWrite: 4000 });
    // a is a parent carrying its own usage with a child carrying usage: claimed (never both); what its aggregate
    // holds beyond the child, field by field (4,000 input tokens, cache reads within them), counts as its own.
    const na = t.nodes.find((n: { spanId: string }) => n.spanId === 'a');
    assert.equal(na.role, 'claimed');
    const aUnreported = nano('gpt-4o', 'openai', at, { input: 4000, output: 0, cacheRead: 4000 });
    assert.equal(na.selfCostNano, aUnreported);
    assert.equal(t.total.costNano, b + aUnreported);
    assert.equal(t.total.tokens.cacheRead, 1000 + 4000, 'of 7,000 unreported cache reads, at most the 4,000 unreported input');
    assert.equal(t.total.tokens.cacheWrite, 4000);
    // Cache reads are cheaper than fresh input: 8000 cached tokens of gpt-4o cost half the fresh price.
    assert.equal(a, nano('gpt-4o', 'openai', at, { input: 2000, output: 100 }) + Math.round(8000 * 1.25e-6 * 1e9));
  });

  it('streaming without usage, unpriced models and provided costs: never $0, kept apart', async () => {
    const r = await ingest(fixture('streaming').spans!);
    assert.equal(r.accepted, 4);
    const t = await tree('st-session');
    const stream = t.nodes.find((n: { spanId: string }) => n.spanId === 'stream');
    assert.equal(stream.role, 'unmetered');
    assert.equal(stream.selfCostUsd, null);
    const mystery = t.nodes.find((n: { spanId: string }) => n.spanId === 'mystery');
    assert.equal(mystery.priceSource, 'unpriced');
    assert.equal(mystery.selfCostUsd, null);
    const billed = t.nodes.find((n: { spanId: string }) => n.spanId === 'billed');
    assert.equal(billed.priceSource, 'provided');
    assert.equal(billed.selfCostNano, 250_000_000);
    assert.equal(t.total.unmeteredCalls, 1);
    assert.equal(t.total.unpricedCalls, 1);
    assert.equal(t.total.unpricedTokens, 1100);
    assert.equal(t.total.providedNano, 250_000_000);
    assert.equal(t.total.computedNano, 0);
    assert.equal(t.total.complete, false);
    const m = row(await report('model'), 'acme-llm-9000')!;
    assert.equal(m.unpricedCalls, 1);
    assert.equal(m.costNano, 250_000_000);
  });

  it('retry storm: every attempt is a node; wasted = the failed attempts', async () => {
    const r = await ingest(fixture('retry-storm').spans!);
    assert.equal(r.accepted, 10);
    const t = await tree('rs-session');
    const at = '2025-06-20T13:00:00Z';
    const mini = nano('gpt-4o-mini', 'openai', at, { input: 10000, output: 1000 });
    const miniNoOut = nano('gpt-4o-mini', 'openai', at, { input: 10000, output: 0 });
    const coord = nano('gpt-4o', 'openai', at, { input: 2000, output: 200 }) + nano('gpt-4o', 'openai', at, { input: 3000, output: 500 });
    assert.equal(t.wastedOnRetries.costNano, 2 * mini + miniNoOut);
    assert.equal(t.wastedOnRetries.calls, 3);
    assert.equal(t.attempts.successful.costNano, mini + coord);
    assert.equal(t.attempts.failedSpans, 3);
    assert.equal(t.attempts.retriedSpans, 3);
    assert.equal(t.attempts.maxAttempt, 4);
    assert.equal(t.total.costNano, 3 * mini + miniNoOut + coord);
    const tries = t.nodes.filter((n: { attempt?: number }) => n.attempt !== undefined);
    assert.equal(tries.length, 4);
    const searcher = t.byAgent.find((b: { key: string }) => b.key === 'searcher');
    assert.equal(searcher.costNano, 3 * mini + miniNoOut);
  });

  it('children before parents: held as pending, then attributed to the root’s session, customer and team', async () => {
    const [b1, b2, b3] = fixture('children-first').batches!;
    await ingest(b1!);
    // The leaves name a parent that has not arrived: their trace defaults to its own session, pending.
    const early = await tree('trace-cf-trace');
    assert.deepEqual(early.pending.sort(), ['leaf-1', 'leaf-2']);
    assert.equal(row(await report('customer'), '(none)')?.calls ?? 0, 2);
    await ingest(b2!);
    await ingest(b3!);
    const t = await tree('cf-session');
    assert.deepEqual(t.pending, []);
    const at = '2025-06-20T14:00:00Z';
    const expected = nano('gpt-4o', 'openai', at, { input: 1200, output: 300 }) + nano('gpt-4o', 'openai', at, { input: 800, output: 100 });
    assert.equal(t.total.costNano, expected);
    assert.equal(t.nodes.find((n: { spanId: string }) => n.spanId === 'agent').role, 'claimed');
    assert.equal(t.nodes.find((n: { spanId: string }) => n.spanId === 'leaf-1').customer, 'cf-customer');
    // The rollups moved the calls from "(none)" to the root's customer and team: nothing counted twice.
    assert.equal(row(await report('customer'), '(none)')?.calls ?? 0, 0);
    assert.equal(row(await report('customer'), 'cf-customer')!.costNano, expected);
    assert.equal(row(await report('team'), 'cf-team')!.calls, 2);
    assert.equal(row(await report('agent'), 'analyst')!.calls, 2);
  });

  it('per-tenant price overrides replace the catalog price for that customer', async () => {
    const put = await call('PUT', '/v1/price-overrides/ov-customer', { models: [{ model: 'gpt-4o', inputMTok: 1, outputMTok: 2, cacheReadMTok: 0.5 }] });
    assert.equal(put.statusCode, 200, put.body);
    await ingest([
      { traceId: 'ov-trace', spanId: 'x', sessionId: 'ov-session', customer: 'ov-customer', agent: 'a', model: 'gpt-4o', usage: { input: 1_000_000, output: 1_000_000, cacheRead: 500_000 }, start: '2025-06-20T15:00:00Z', end: '2025-06-20T15:00:01Z' },
    ]);
    const t = await tree('ov-session');
    assert.equal(t.nodes[0].priceSource, 'override');
    assert.equal(t.total.costNano, 500_000_000 + 250_000_000 + 2_000_000_000);
    assert.equal((await call('GET', '/v1/price-overrides/nobody')).statusCode, 404);
    // The `*` overrides still price the models the customer's own document does not name.
    assert.equal((await call('PUT', '/v1/price-overrides/*', { models: [{ model: 'gpt-4o', inputMTok: 9, outputMTok: 9 }, { model: 'gpt-4o-mini', inputMTok: 3, outputMTok: 4 }] })).statusCode, 200);
    await ingest([
      { traceId: 'ov-trace-2', spanId: 'y', sessionId: 'ov-session-2', customer: 'ov-customer', agent: 'a', model: 'gpt-4o-mini', usage: { input: 1_000_000, output: 1_000_000 }, start: '2025-06-20T15:00:00Z', end: '2025-06-20T15:00:01Z' },
      { traceId: 'ov-trace-2', spanId: 'z', sessionId: 'ov-session-2', customer: 'ov-customer', agent: 'a', model: 'gpt-4o', usage: { input: 1_000_000, output: 0 }, start: '2025-06-20T15:00:00Z', end: '2025-06-20T15:00:01Z' },
    ]);
    const t2 = await tree('ov-session-2');
    assert.ok(t2.nodes.every((n: { priceSource: string }) => n.priceSource === 'override'));
    assert.equal(t2.total.costNano, 3_000_000_000 + 4_000_000_000 + 1_000_000_000, "gpt-4o-mini at the `*` price, gpt-4o at the customer's own");
    assert.equal((await call('DELETE', '/v1/price-overrides/*')).statusCode, 200);
    assert.equal((await call('DELETE', '/v1/price-overrides/ov-customer')).statusCode, 200);
  });

  it('rejects bad spans one by one with the field named, keeps the rest', async () => {
    const r = await ingest([
      { traceId: 'bad-trace', spanId: 'ok', agent: 'a', start: '2025-06-20T16:00:00Z', end: '2025-06-20T16:00:01Z' },
      { traceId: 'bad-trace', spanId: 'no-agent', start: '2025-06-20T16:00:00Z', end: '2025-06-20T16:00:01Z' },
      { traceId: 'bad-trace', spanId: 'reversed', agent: 'a', start: '2025-06-20T16:00:05Z', end: '2025-06-20T16:00:01Z' },
      { traceId: 'bad-trace', spanId: 'neg', agent: 'a', usage: { input: -1, output: 0 }, start: 0, end: 0 },
      'not a span',
    ]);
    assert.equal(r.accepted, 1);
    assert.deepEqual(
      r.rejected.map((x) => x.index),
      [1, 2, 3, 4],
    );
    assert.match(r.rejected[0]!.reason, /body\/spans\/1\/agent/);
    assert.match(r.rejected[1]!.reason, /body\/spans\/2\/end is before start/);
    assert.match(r.rejected[2]!.reason, /body\/spans\/3\/usage\/input/);
    const bad = await call('POST', '/v1/spans', { spans: 'nope' });
    assert.equal(bad.statusCode, 400);
    assert.equal((await call('GET', '/v1/sessions/nope/cost-tree')).statusCode, 404);
    assert.equal((await call('GET', '/v1/reports/costs?groupBy=planet')).statusCode, 400);
  });

  it('CSV showback lists every customer with the same totals as JSON', async () => {
    const res = await call('GET', '/v1/reports/costs?groupBy=customer&from=2025-06-20&to=2025-06-20&format=csv');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /text\/csv/);
    const lines = res.body.trim().split('\n');
    assert.equal(lines[0], 'key,calls,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cost_usd,provided_usd,computed_usd,unpriced_calls,unpriced_tokens,unmetered_calls');
    const dc = lines.find((l) => l.startsWith('dc-customer,'))!;
    const json = row(await report('customer'), 'dc-customer')!;
    assert.equal(dc.split(',')[6], (json.costNano / 1e9).toFixed(9));
    const total = lines[lines.length - 1]!;
    assert.ok(total.startsWith('TOTAL,'));
  });

  it('concurrent batches of one trace leave the rollups equal to the tree', async () => {
    const spans = Array.from({ length: 40 }, (_, i) => ({
      traceId: 'cc-trace',
      spanId: `c${i}`,
      ...(i > 0 ? { parentSpanId: `c${Math.floor((i - 1) / 3)}` } : { sessionId: 'cc-session', customer: 'cc-customer' }),
      agent: `agent-${i % 4}`,
      model: 'gpt-4o-mini',
      usage: { input: 100 + i, output: 10 + i },
      start: Date.parse('2025-06-22T10:00:00Z') + i,
      end: Date.parse('2025-06-22T10:00:00Z') + i + 1,
    }));
    // Eight requests at once, overlapping (each span sent twice), children and parents mixed.
    const batches = Array.from({ length: 8 }, (_, b) => spans.filter((_, i) => i % 4 === b % 4));
    await Promise.all(batches.map((b) => ingest(b)));
    const t = await tree('cc-session');
    assert.equal(t.nodes.length, 40);
    const r = await report('customer', '2025-06-22');
    assert.equal(row(r, 'cc-customer')!.costNano, t.total.costNano);
    assert.equal(row(r, 'cc-customer')!.calls, t.total.calls);
    assert.equal(r.rows.length, 1);
  });

  it('spans stored without their rollup step (a crash in between) are rolled up when the batch is retried', async () => {
    const span = (id: string, parent?: string) => ({
      traceId: 'cr-trace',
      spanId: id,
      ...(parent ? { parentSpanId: parent } : { sessionId: 'cr-session', customer: 'cr-customer' }),
      agent: 'a',
      kind: parent ? ('llm' as const) : ('agent' as const),
      status: 'ok' as const,
      ...(parent ? { model: 'gpt-4o', usage: { input: 1000, output: 100, cacheRead: 0, cacheWrite: 0, reasoning: 0 } } : {}),
      start: Date.parse('2025-06-23T10:00:00Z'),
      end: Date.parse('2025-06-23T10:00:01Z'),
    });
    const stored = [span('r'), span('x', 'r')];
    // Only the first step of an ingest: the spans are stored, the process "dies" before the rollup.
    const ck = costKeys(rt.core.keys);
    await runScript(rt.core.redis, 'spanIngest', [ck.traceSpans('cr-trace'), ck.traceVersion('cr-trace')], [3600, 100, stored.map(encodeSpan).join('\n')]);
    assert.equal(row(await report('customer', '2025-06-23'), 'cr-customer'), undefined);
    // The client retries the same batch: all duplicates, and the rollup catches up.
    const { usage: _u, ...plain } = stored[1]!;
    const retry = await ingest([{ ...stored[0]! }, { ...plain, usage: { input: 1000, output: 100 } }]);
    assert.deepEqual(retry, { accepted: 0, duplicates: 2, rejected: [] });
    const t = await tree('cr-session');
    assert.equal(row(await report('customer', '2025-06-23'), 'cr-customer')!.costNano, t.total.costNano);
    assert.ok(t.total.costNano > 0);
  });

  it('a gzip body is limited by its inflated size', async () => {
    const { gzipSync } = await import('node:zlib');
    const big = gzipSync(JSON.stringify({ spans: [], pad: 'x'.repeat(3_000_000) }));
    const res = await rt.app!.inject({ method: 'POST', url: '/v1/spans', payload: big, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    assert.equal(res.statusCode, 413, res.body);
  });
});
