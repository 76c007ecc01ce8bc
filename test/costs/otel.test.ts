import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { context, trace, SpanStatusCode, type Span as OtelSpan, type Tracer } from '@opentelemetry/api';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, SimpleSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('costs-otel');
let rt: Running;

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

function provider(processor: (e: OTLPTraceExporter) => SpanProcessor, gzip: boolean): NodeTracerProvider {
  const exporter = new OTLPTraceExporter({ url: `${rt.url}/v1/traces`, ...(gzip ? { compression: CompressionAlgorithm.GZIP } : {}) });
  return new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'otel-test' }), spanProcessors: [processor(exporter)] });
}

/** A coordinator with one call, a researcher sub-agent with two calls (current and deprecated names), an OpenInference call. */
function runSession(tracer: Tracer, session: string): void {
  const child = (parent: OtelSpan, name: string, attrs: Record<string, string | number>) => tracer.startSpan(name, { attributes: attrs }, trace.setSpan(context.active(), parent));
  const root = tracer.startSpan('invoke_agent coordinator', {
    attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'coordinator', 'session.id': session, 'user.id': `${session}-customer` },
  });
  child(root, 'chat gpt-4o', {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.model': 'gpt-4o',
    'gen_ai.usage.input_tokens': 1000,
    'gen_ai.usage.output_tokens': 200,
    'gen_ai.usage.cache_read.input_tokens': 400,
  }).end();
  const researcher = child(root, 'invoke_agent researcher', { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'researcher' });
  child(researcher, 'chat', { 'gen_ai.system': 'openai', 'gen_ai.response.model': 'gpt-4o-mini', 'gen_ai.usage.prompt_tokens': 500, 'gen_ai.usage.completion_tokens': 50 }).end();
  const failing = child(researcher, 'llm', { 'openinference.span.kind': 'LLM', 'llm.model_name': 'gpt-4o-mini', 'llm.provider': 'openai', 'llm.token_count.prompt': '300', 'llm.token_count.completion': '30' });
  failing.setStatus({ code: SpanStatusCode.ERROR, message: 'rate limited' });
  failing.end();
  researcher.end();
  root.end();
}

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${rt.url}${path}`);
  return { status: res.status, body: await res.json() };
}

function checkTree(t: any, session: string): void {
  assert.equal(t.pending.length, 0);
  assert.equal(t.total.calls, 3);
  assert.equal(t.total.tokens.input, 1800);
  assert.equal(t.total.tokens.output, 280);
  assert.equal(t.total.tokens.cacheRead, 400);
  assert.equal(t.total.unpricedCalls, 0);
  assert.ok(t.total.costNano > 0);
  const agents = Object.fromEntries(t.byAgent.map((b: any) => [b.key, b.tokens.total]));
  assert.deepEqual(agents, { coordinator: 1200, researcher: 880 });
  for (const n of t.nodes) assert.equal(n.customer, `${session}-customer`);
  const failed = t.nodes.find((n: any) => n.status === 'error');
  assert.equal(failed.agent, 'researcher');
  assert.equal(t.wastedOnRetries.calls, 1);
  assert.deepEqual(
    t.byLevel.map((b: any) => b.key),
    ['0', '1'],
  );
}

describe('OpenTelemetry end to end (real SDK and OTLP/HTTP JSON exporter over a socket)', () => {
  it('batch processor, gzip: GenAI conventions, deprecated names and OpenInference map onto one tree', async () => {
    const p = provider((e) => new BatchSpanProcessor(e), true);
    runSession(p.getTracer('t'), 'otel-batch');
    await p.forceFlush();
    await p.shutdown();
    const t = await get('/v1/sessions/otel-batch/cost-tree');
    assert.equal(t.status, 200, JSON.stringify(t.body));
    checkTree(t.body, 'otel-batch');
  });

  it('simple processor: every span its own export, children before their parents, identifiers on the root only', async () => {
    const p = provider((e) => new SimpleSpanProcessor(e), false);
    runSession(p.getTracer('t'), 'otel-simple');
    await p.forceFlush();
    await p.shutdown();
    const t = await get('/v1/sessions/otel-simple/cost-tree');
    assert.equal(t.status, 200, JSON.stringify(t.body));
    checkTree(t.body, 'otel-simple');
    const customers = await get('/v1/reports/costs?groupBy=customer');
    const row = customers.body.rows.find((r: any) => r.key === 'otel-simple-customer');
    assert.equal(row.tokens.total, 2080);
    assert.equal(customers.body.rows.find((r: any) => r.key === '(none)'), undefined);
  });

  it('answers partialSuccess for rejected spans, accepts gzip by hand, refuses unknown encodings', async () => {
    const now = BigInt(Date.now()) * 1_000_000n;
    const span = (spanId: string, extra: object = {}) => ({
      traceId: 'aa'.repeat(16),
      spanId,
      name: 'chat',
      startTimeUnixNano: String(now),
      endTimeUnixNano: String(now + 1_000_000n),
      attributes: [
        { key: 'gen_ai.request.model', value: { stringValue: 'gpt-4o' } },
        { key: 'gen_ai.usage.input_tokens', value: { intValue: '10' } },
        { key: 'gen_ai.usage.output_tokens', value: { intValue: 5 } },
        { key: 'session.id', value: { stringValue: 'otel-raw' } },
      ],
      ...extra,
    });
    const body = { resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans: [span('bb'.repeat(8)), span('xyz'), span('cc'.repeat(8), { endTimeUnixNano: '5' })] }] }] };
    const post = (payload: Buffer | string, headers: Record<string, string>) =>
      fetch(`${rt.url}/v1/traces`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', ...headers } });
    const res = await post(gzipSync(JSON.stringify(body)), { 'content-encoding': 'gzip' });
    assert.equal(res.status, 200);
    const out = (await res.json()) as { partialSuccess: { rejectedSpans: number; errorMessage: string } };
    assert.equal(out.partialSuccess.rejectedSpans, 2);
    assert.match(out.partialSuccess.errorMessage, /2 span\(s\) rejected/);
    const again = await post(JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [span('dd'.repeat(8))] }] }] }), {});
    assert.deepEqual(await again.json(), {});
    const t = await get('/v1/sessions/otel-raw/cost-tree');
    assert.equal(t.body.total.tokens.total, 30);
    const bad = await post('not gzip at all', { 'content-encoding': 'gzip' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, 'INVALID_CONTENT_ENCODING');
    const br = await post(JSON.stringify(body), { 'content-encoding': 'br' });
    assert.equal(br.status, 415);
    assert.equal(((await br.json()) as { code: string }).code, 'UNSUPPORTED_CONTENT_ENCODING');
    const proto = await fetch(`${rt.url}/v1/traces`, { method: 'POST', body: 'x', headers: { 'content-type': 'application/x-protobuf' } });
    assert.equal(proto.status, 415);
  });
});
