import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { REPAIR_GRACE_MS } from '../../src/costs/ingest.js';
import { costKeys, type CostKeys } from '../../src/costs/keys.js';
import type { CostsModule } from '../../src/costs/module.js';
import { mapOtlp } from '../../src/costs/otlp.js';
import { FIELD_SEP } from '../../src/costs/rollup-vector.js';
import { callScript } from '../../src/redis/scripts.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * What ingest does with input at the edges of its ranges and with a request that fails half way: every bad span is
 * refused on its own (never a 5xx, never a rollup that disagrees with the tree), and what a failed request stored is
 * finished without the client retrying.
 */
const prefix = testPrefix('costs-ingest-safety');
let rt: Running;
let ck: CostKeys;
let costs: CostsModule;

const call = (method: 'GET' | 'POST', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

const hex = (n: number, bytes: number) => n.toString(16).padStart(bytes * 2, '0');
const DAY = '2025-07-02';
const NANOS = BigInt(Date.parse(`${DAY}T10:00:00Z`)) * 1_000_000n;

type Attr = { key: string; value: Record<string, unknown> };
const str = (key: string, v: string): Attr => ({ key, value: { stringValue: v } });

/** An OTLP/JSON gpt-4o call span. */
function otlpSpan(trace: number, span: number, attrs: Attr[], extra: Record<string, unknown> = {}) {
  return {
    traceId: hex(trace, 16),
    spanId: hex(span, 8),
    name: 'chat',
    startTimeUnixNano: String(NANOS),
    endTimeUnixNano: String(NANOS + 1_000_000n),
    attributes: [str('gen_ai.request.model', 'gpt-4o'), str('gen_ai.provider.name', 'openai'), str('gen_ai.agent.name', 'safety-agent'), ...attrs],
    ...extra,
  };
}

async function exportOtlp(spans: unknown[]): Promise<{ partialSuccess?: { rejectedSpans: number; errorMessage: string } }> {
  const res = await call('POST', '/v1/traces', { resourceSpans: [{ scopeSpans: [{ spans }] }] });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

async function postSpans(spans: unknown[]) {
  const res = await call('POST', '/v1/spans', { spans });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as { accepted: number; duplicates: number; rejected: { index: number; reason: string }[] };
}

type Totals = { calls: number; costNano: number; tokens: { input: number; output: number } };
async function tree(session: string): Promise<{ status: number; total?: Totals }> {
  const res = await call('GET', `/v1/sessions/${encodeURIComponent(session)}/cost-tree`);
  return { status: res.statusCode, ...(res.statusCode === 200 ? { total: (res.json() as { total: Totals }).total } : {}) };
}

async function showback(groupBy: string, key: string, day = DAY): Promise<Totals | undefined> {
  const res = await call('GET', `/v1/reports/costs?groupBy=${groupBy}&from=${day}&to=${day}`);
  assert.equal(res.statusCode, 200, res.body);
  return (res.json() as { rows: (Totals & { key: string })[] }).rows.find((r) => r.key === key);
}

const storedCount = async () => (await rt.core.metrics.spans.get()).values.find((v) => v.labels.result === 'stored')?.value ?? 0;

before(async () => {
  rt = await startTest(prefix);
  ck = costKeys(rt.core.keys);
  costs = rt.modules.find((m) => m.name === 'costs') as CostsModule;
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('token counts and costs out of range', () => {
  it('OTLP: a span with a token count or cost above what a span may carry is rejected alone; tree and showback agree', async () => {
    const session = 'huge-session';
    const out = await exportOtlp([
      otlpSpan(1, 1, [str('session.id', session), str('user.id', 'huge-customer'), { key: 'gen_ai.usage.input_tokens', value: { doubleValue: 1e21 } }]),
      otlpSpan(1, 2, [str('session.id', session), str('user.id', 'huge-customer'), { key: 'gen_ai.usage.input_tokens', value: { intValue: '5000000000000000' } }]),
      otlpSpan(1, 3, [str('session.id', session), str('user.id', 'huge-customer'), { key: 'gen_ai.usage.output_tokens', value: { intValue: 10 } }, { key: 'apportion.cost_usd', value: { doubleValue: 2e6 } }]),
      otlpSpan(1, 4, [str('session.id', session), str('user.id', 'huge-customer'), { key: 'gen_ai.usage.input_tokens', value: { intValue: 100 } }, { key: 'gen_ai.usage.output_tokens', value: { intValue: 10 } }]),
    ]);
    assert.equal(out.partialSuccess?.rejectedSpans, 3, JSON.stringify(out));
    assert.match(out.partialSuccess!.errorMessage, /usage\.input is 1e\+21 tokens \(at most 1000000000\)/);
    assert.match(out.partialSuccess!.errorMessage, /costUsd is 2000000 \(at most 1000000\)/);
    const t = await tree(session);
    assert.equal(t.status, 200);
    assert.deepEqual([t.total!.calls, t.total!.tokens.input], [1, 100]);
    const row = await showback('customer', 'huge-customer');
    assert.deepEqual([row?.calls, row?.tokens.input, row?.costNano], [1, 100, t.total!.costNano]);
  });

  it('a trace whose sum would leave the exact range: the batch that would take it there is refused per span, the trace keeps working', async () => {
    const span = (id: string, costUsd: number) => ({
      traceId: 'range-trace',
      spanId: id,
      sessionId: 'range-session',
      customer: 'range-customer',
      agent: 'a',
      model: 'gpt-4o',
      provider: 'openai',
      usage: { input: 10, output: 1 },
      costUsd,
      start: `${DAY}T11:00:00Z`,
      end: `${DAY}T11:00:01Z`,
    });
    // $1M is the most one span may carry; 2^53 nano-USD (about $9.007M) is what one rollup field of a trace holds.
    const first = await postSpans(Array.from({ length: 5 }, (_, i) => span(`a${i}`, 1_000_000)));
    assert.deepEqual([first.accepted, first.rejected.length], [5, 0]);
    const batch = Array.from({ length: 5 }, (_, i) => span(`b${i}`, 1_000_000));
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await postSpans(batch);
      assert.deepEqual([r.accepted, r.duplicates, r.rejected.length], [0, 0, 5], JSON.stringify(r));
      assert.match(r.rejected[0]!.reason, /trace range-trace: .*2\^53 - 1 per field/);
    }
    const small = await postSpans([span('c0', 0.5)]);
    assert.deepEqual([small.accepted, small.rejected.length], [1, 0]);
    const t = await tree('range-session');
    assert.deepEqual([t.total!.calls, t.total!.costNano], [6, 5_000_000_500_000_000]);
    const row = await showback('customer', 'range-customer');
    assert.deepEqual([row?.calls, row?.costNano], [6, 5_000_000_500_000_000]);
  });

  it('a rollup field that would overflow: nothing of the trace is added, its spans are refused, a retry changes nothing', async () => {
    const traceId = 'overflow-trace';
    const shard = ck.shardOf(traceId);
    // The day's rollup for this customer is already near what HINCRBY holds (2^63 - 1).
    const near = '9223372036854775000';
    await rt.core.redis.hset(ck.rollup(`customer:${DAY}`, shard), `overflow-customer${FIELD_SEP}providedNano`, near);
    const span = {
      traceId,
      spanId: 'o1',
      sessionId: 'overflow-session',
      customer: 'overflow-customer',
      agent: 'a',
      model: 'gpt-4o',
      usage: { input: 10, output: 1 },
      costUsd: 1,
      start: `${DAY}T12:00:00Z`,
      end: `${DAY}T12:00:01Z`,
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      const r = await postSpans([span]);
      assert.deepEqual([r.accepted, r.rejected.length], [0, 1], JSON.stringify(r));
    }
    const all = await rt.core.redis.hgetall(ck.rollup(`customer:${DAY}`, shard));
    const customer = Object.fromEntries(Object.entries(all).filter(([f]) => f.startsWith(`overflow-customer${FIELD_SEP}`)));
    assert.deepEqual(customer, { [`overflow-customer${FIELD_SEP}providedNano`]: near }, 'no increment of the refused trace is left behind');
    assert.equal(await rt.core.redis.get(ck.applied(traceId)), null);
    assert.equal(await rt.core.redis.hlen(ck.traceSpans(traceId)), 0, 'the refused span is not kept in the trace either');
    assert.equal((await tree('overflow-session')).status, 404);
  });

  it('the rollup script refuses a contribution it cannot add exactly and writes nothing for it', async () => {
    const traceId = 'script-trace';
    const shard = ck.shardOf(traceId);
    const name = 'day:2025-07-09';
    const keys = [ck.applied(traceId), ck.repair(shard), ck.rollup(name, shard)];
    const contribution = (v: string) => `${name}\x1e2025-07-09\x1fcalls\x1e1\n${name}\x1e2025-07-09\x1finput\x1e${v}`;
    for (const v of ['1e+21', '10000000000000000000', '9007199254740993']) {
      const statuses = await callScript(rt.core.redis, 'costRollup', keys, [1, 3600, 0, name, 1, contribution(v)]);
      assert.deepEqual(statuses, [-1], v);
    }
    assert.equal(await rt.core.redis.exists(ck.rollup(name, shard)), 0);
    assert.equal(await rt.core.redis.get(ck.applied(traceId)), null);
    assert.deepEqual(await callScript(rt.core.redis, 'costRollup', keys, [1, 3600, 0, name, 1, contribution('9007199254740991')]), [1]);
  });

  it('a script error is a 500 INTERNAL, not a 503 that asks the exporter to retry', async () => {
    // A trace key of another type: the store script fails on it (a bug or a corrupted key, not an unreachable store).
    await rt.core.redis.set(ck.traceSpans('wrongtype-trace'), 'x');
    const res = await call('POST', '/v1/spans', {
      spans: [{ traceId: 'wrongtype-trace', spanId: 's', agent: 'a', start: `${DAY}T10:00:00Z`, end: `${DAY}T10:00:01Z` }],
    });
    assert.equal(res.statusCode, 500, res.body);
    assert.equal((res.json() as { code: string }).code, 'INTERNAL');
    await rt.core.redis.del(ck.traceSpans('wrongtype-trace'));
  });
});

describe('OTLP ids', () => {
  it('session and customer ids longer than 256 characters are rejected per span, never cut into one merged id', async () => {
    const base = 's'.repeat(260);
    const user = 'u'.repeat(265);
    const used = { key: 'gen_ai.usage.input_tokens', value: { intValue: 7 } };
    const out = await exportOtlp([
      otlpSpan(2, 1, [str('session.id', `${base}-one`), str('user.id', 'short-user')]),
      otlpSpan(2, 2, [str('session.id', `${base}-two`), str('user.id', 'short-user')]),
      otlpSpan(3, 1, [str('session.id', 'long-user-session'), str('user.id', `${user}-a`), used]),
      otlpSpan(3, 2, [str('session.id', 'long-user-session'), str('user.id', 'fine-user'), used]),
    ]);
    assert.equal(out.partialSuccess?.rejectedSpans, 3, JSON.stringify(out));
    assert.match(out.partialSuccess!.errorMessage, /sessionId is 264 characters \(at most 256\)/);
    assert.match(out.partialSuccess!.errorMessage, /customer is 267 characters \(at most 256\)/);
    assert.equal((await tree(base.slice(0, 256))).status, 404, 'no session under the cut id');
    assert.equal((await tree('long-user-session')).total?.calls, 1);
    assert.equal(await showback('customer', user.slice(0, 256)), undefined);
  });

  it('a long span name is shortened without splitting a surrogate pair', () => {
    const name = `${'n'.repeat(255)}😀tail`;
    const { spans } = mapOtlp({ resourceSpans: [{ scopeSpans: [{ spans: [otlpSpan(4, 1, [], { name })] }] }] });
    assert.equal(spans[0]!.name, 'n'.repeat(255));
  });

  it('an all-zero parentSpanId means a root; all-zero trace and span ids are rejected per span', async () => {
    const zeroParent = otlpSpan(5, 1, [str('session.id', 'zero-parent'), { key: 'gen_ai.usage.input_tokens', value: { intValue: 5 } }], { parentSpanId: '0'.repeat(16) });
    const mapped = mapOtlp({
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                zeroParent,
                otlpSpan(5, 2, [], { parentSpanId: new Uint8Array(8) }),
                otlpSpan(0, 3, []),
                otlpSpan(6, 0, []),
                { ...otlpSpan(7, 1, []), traceId: new Uint8Array(16) },
              ],
            },
          ],
        },
      ],
    });
    assert.deepEqual(
      mapped.spans.map((s) => [s.spanId, s.parentSpanId]),
      [
        [hex(1, 8), undefined],
        [hex(2, 8), undefined],
      ],
    );
    assert.deepEqual(
      mapped.rejected.map((r) => r.reason),
      [`span ${hex(3, 8)}: traceId is all zeros (an invalid id in OTLP)`, `span ${'0'.repeat(16)}: spanId is all zeros (an invalid id in OTLP)`, `span ${hex(1, 8)}: traceId is all zeros (an invalid id in OTLP)`],
    );
    await exportOtlp([zeroParent]);
    const res = await call('GET', '/v1/sessions/zero-parent/cost-tree');
    const body = res.json() as { nodes: { orphan?: boolean }[]; pending: unknown[] };
    assert.equal(body.nodes[0]!.orphan ?? false, false);
    assert.deepEqual(body.pending, []);
  });
});

describe('indexes and repair', () => {
  it('the session index is refreshed with the trace on every write, so the tree opens as long as its spans live', async () => {
    const span = (id: string) => ({ traceId: 'ttl-trace', spanId: id, sessionId: 'ttl-session', agent: 'a', start: `${DAY}T13:00:00Z`, end: `${DAY}T13:00:01Z` });
    await postSpans([span('t1')]);
    const index = ck.sessionTraces('ttl-session');
    // As if the index had expired (an earlier write's TTL) while the trace went on receiving spans.
    await rt.core.redis.del(index);
    await postSpans([span('t2')]);
    assert.equal((await tree('ttl-session')).status, 200);
    await rt.core.redis.expire(index, 100);
    await postSpans([span('t3')]);
    assert.ok((await rt.core.redis.ttl(index)) > 100, 'each write gives the index the trace’s TTL again');
  });

  it('spans stored by a request that failed before its rollup are indexed and rolled up without a retry', async () => {
    const session = 'repair-session';
    const before = await storedCount();
    // The request stores its spans, then fails writing the session index (a key of another type stands in for a
    // Redis that stalls or a process that dies at that point).
    await rt.core.redis.set(ck.sessionTraces(session), 'x');
    const span = (id: string, parent?: string) => ({
      traceId: 'repair-trace',
      spanId: id,
      ...(parent ? { parentSpanId: parent, model: 'gpt-4o', provider: 'openai', usage: { input: 1000, output: 100 } } : { sessionId: session, customer: 'repair-customer', kind: 'agent' }),
      agent: 'a',
      start: `${DAY}T14:00:00Z`,
      end: `${DAY}T14:00:01Z`,
    });
    const failed = await call('POST', '/v1/spans', { spans: [span('r'), span('x', 'r')] });
    assert.equal(failed.statusCode, 500, failed.body);
    assert.equal(await rt.core.redis.hlen(ck.traceSpans('repair-trace')), 2, 'the spans were stored');
    assert.equal(await storedCount(), before + 2, 'the spans the failed request stored are counted as stored');
    assert.equal(await showback('customer', 'repair-customer'), undefined);
    await rt.core.redis.del(ck.sessionTraces(session));
    // A pass too early leaves the request alone (it may still be in flight); a later one finishes it.
    assert.equal(await costs.spans.repair(Date.now(), REPAIR_GRACE_MS), 0);
    assert.equal(await costs.spans.repair(Date.now() + REPAIR_GRACE_MS + 1000), 1);
    const t = await tree(session);
    assert.equal(t.status, 200);
    const row = await showback('customer', 'repair-customer');
    assert.deepEqual([row?.calls, row?.costNano], [1, t.total!.costNano]);
    assert.ok(t.total!.costNano > 0);
    assert.equal(await costs.spans.repair(Date.now() + REPAIR_GRACE_MS + 1000), 0, 'its intent is gone');
    // The exporter's retry, if any, finds duplicates and changes nothing.
    const retry = await postSpans([span('r'), span('x', 'r')]);
    assert.deepEqual([retry.accepted, retry.duplicates], [0, 2]);
    assert.equal(await storedCount(), before + 2);
    assert.deepEqual((await showback('customer', 'repair-customer'))?.costNano, t.total!.costNano);
  });
});

describe('showback dates', () => {
  it('a day that does not exist or carries trailing characters is an invalid date', async () => {
    for (const [q, field] of [
      ['from=2026-02-31&to=2026-03-05', 'from'],
      ['from=2026-11-01&to=2026-12-01abc', 'to'],
      ['from=2026-13-01&to=2026-12-01', 'from'],
    ] as const) {
      const res = await call('GET', `/v1/reports/costs?groupBy=day&${q}`);
      assert.equal(res.statusCode, 400, q);
      assert.match((res.json() as { message: string }).message, new RegExp(`^querystring/${field} must be a date \\(YYYY-MM-DD\\)`), q);
    }
  });
});
