import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { context, trace, SpanStatusCode, type Span as OtelSpan } from '@opentelemetry/api';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import fc from 'fast-check';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, InMemorySpanExporter, SimpleSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { decodeOtlpProto, ExportTraceServiceResponse } from '../../src/costs/otlp-proto.js';
import { mapOtlp, type OtlpRequest } from '../../src/costs/otlp.js';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';
import { checkTree, runSession } from '../helpers/otel-session.js';

const prefix = testPrefix('costs-otel');
const server = serveDuring(prefix, { PORT: '0' });

/** A child of `parent` (the session helper is written against any OpenTelemetry API version). */
const childOf = (parent: OtelSpan) => trace.setSpan(context.active(), parent);

function provider(processor: (e: OTLPTraceExporter | OTLPProtoTraceExporter) => SpanProcessor, gzip: boolean, wire: 'json' | 'protobuf' = 'json'): NodeTracerProvider {
  const opts = { url: `${server.rt.url}/v1/traces`, ...(gzip ? { compression: CompressionAlgorithm.GZIP } : {}) };
  const exporter = wire === 'json' ? new OTLPTraceExporter(opts) : new OTLPProtoTraceExporter(opts);
  return new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'otel-test' }), spanProcessors: [processor(exporter)] });
}

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.rt.url}${path}`);
  return { status: res.status, body: await res.json() };
}

describe('OpenTelemetry end to end (real SDK and OTLP/HTTP JSON exporter over a socket)', () => {
  it('batch processor, gzip: GenAI conventions, deprecated names and OpenInference map onto one tree', async () => {
    const p = provider((e) => new BatchSpanProcessor(e), true);
    runSession(p.getTracer('t'), childOf, 'otel-batch');
    await p.forceFlush();
    await p.shutdown();
    const t = await get('/v1/sessions/otel-batch/cost-tree');
    assert.equal(t.status, 200, JSON.stringify(t.body));
    checkTree(t.body, 'otel-batch');
  });

  it('simple processor: every span its own export, children before their parents, identifiers on the root only', async () => {
    const p = provider((e) => new SimpleSpanProcessor(e), false);
    runSession(p.getTracer('t'), childOf, 'otel-simple');
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
      fetch(`${server.rt.url}/v1/traces`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', ...headers } });
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
    const text = await post('x', { 'content-type': 'text/plain' });
    assert.equal(text.status, 415);
    const refused = (await text.json()) as { code: string; message: string };
    assert.equal(refused.code, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(refused.message, /"text\/plain" is not supported; POST \/v1\/traces accepts application\/json or application\/x-protobuf/);
  });
});

describe('OTLP/HTTP protobuf (the official protobuf exporter over a socket)', () => {
  for (const [processor, gzip] of [['batch', true], ['batch', false], ['simple', true]] as const) {
    it(`${processor} processor${gzip ? ', gzip' : ''}: every span of every session arrives, mapped as over JSON`, async () => {
      const p = provider((e) => (processor === 'batch' ? new BatchSpanProcessor(e, { maxExportBatchSize: 7 }) : new SimpleSpanProcessor(e)), gzip, 'protobuf');
      const sessions = Array.from({ length: 6 }, (_, i) => `proto-${processor}-${gzip}-${i}`);
      for (const s of sessions) runSession(p.getTracer('t'), childOf, s);
      await p.forceFlush();
      await p.shutdown();
      for (const s of sessions) {
        const t = await get(`/v1/sessions/${s}/cost-tree`);
        assert.equal(t.status, 200, JSON.stringify(t.body));
        checkTree(t.body, s);
      }
    });
  }

  it('answers a protobuf ExportTraceServiceResponse, partialSuccess included; refuses bad bytes and protobuf elsewhere', async () => {
    const spans = await recordSpans([
      { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), attributes: { 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 7, 'session.id': 'proto-raw' } },
    ]);
    const body = ProtobufTraceSerializer.serializeRequest(spans)!;
    const post = (payload: Uint8Array | string, path = '/v1/traces') =>
      fetch(`${server.rt.url}${path}`, { method: 'POST', body: payload, headers: { 'content-type': 'application/x-protobuf' } });
    const ok = await post(body);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'application/x-protobuf');
    assert.equal((await ok.arrayBuffer()).byteLength, 0, 'full success is an empty response message');
    // Two concatenated messages are one message with both resourceSpans (protobuf merges repeated fields): the
    // span is sent twice, a duplicate, which is not a rejection.
    const twice = await post(Buffer.concat([Buffer.from(body), Buffer.from(body)]));
    assert.equal(twice.status, 200);
    assert.deepEqual(ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(new Uint8Array(await twice.arrayBuffer()))), {});
    const garbage = await post('x');
    assert.equal(garbage.status, 400);
    assert.equal(((await garbage.json()) as { code: string }).code, 'INVALID_PROTOBUF');
    const elsewhere = await post(body, '/v1/spans');
    assert.equal(elsewhere.status, 415);
    assert.match(((await elsewhere.json()) as { message: string }).message, /POST \/v1\/spans accepts application\/json/);
    const t = await get('/v1/sessions/proto-raw/cost-tree');
    assert.equal(t.body.total.tokens.input, 7);
  });

  it('a rejected span comes back as partialSuccess in the protobuf response', async () => {
    const spans = await recordSpans([
      { traceId: 'ef'.repeat(16), spanId: '01'.repeat(8), attributes: { 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 3, 'session.id': 'proto-partial' } },
      // Started in 1971: out of range.
      { traceId: 'ef'.repeat(16), spanId: '02'.repeat(8), attributes: { 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 3 }, startNs: 31_536_000_000_000_000n },
    ]);
    const res = await fetch(`${server.rt.url}/v1/traces`, { method: 'POST', body: ProtobufTraceSerializer.serializeRequest(spans)!, headers: { 'content-type': 'application/x-protobuf' } });
    assert.equal(res.status, 200);
    const answer = ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(new Uint8Array(await res.arrayBuffer())), { longs: Number }) as {
      partialSuccess: { rejectedSpans: number; errorMessage: string };
    };
    assert.equal(answer.partialSuccess.rejectedSpans, 1);
    assert.match(answer.partialSuccess.errorMessage, /span 0202020202020202: startTimeUnixNano\/endTimeUnixNano missing, out of range or reversed/);
  });
});

interface SpanSpec {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string | undefined;
  readonly name?: string;
  readonly attributes: Record<string, string | number | boolean>;
  readonly resource?: Record<string, string | number | boolean>;
  readonly startNs?: bigint;
  readonly durationNs?: bigint;
  readonly error?: boolean;
  readonly reversed?: boolean;
}

/** Real SDK spans (ReadableSpan) with the given ids and attributes, from an in-memory exporter. */
async function recordSpans(specs: readonly SpanSpec[]) {
  const out = [];
  for (const spec of specs) {
    const memory = new InMemorySpanExporter();
    const p = new NodeTracerProvider({ resource: resourceFromAttributes(spec.resource ?? { 'service.name': 'proto-test' }), spanProcessors: [new SimpleSpanProcessor(memory)] });
    const parent = trace.wrapSpanContext({ traceId: spec.traceId, spanId: spec.parentSpanId ?? '11'.repeat(8), traceFlags: 1 });
    const startNs = spec.startNs ?? BigInt(Date.now()) * 1_000_000n;
    const endNs = startNs + (spec.durationNs ?? 1_000_000n);
    const hr = (ns: bigint): [number, number] => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
    const span = p.getTracer('t').startSpan(spec.name ?? 'chat', { attributes: spec.attributes, startTime: hr(spec.reversed ? endNs : startNs) }, trace.setSpan(context.active(), parent));
    if (spec.error) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end(hr(spec.reversed ? startNs : endNs));
    await p.forceFlush();
    const [finished] = memory.getFinishedSpans();
    // The SDK draws its own span id; put the wanted one in (ReadableSpan is a plain object to the serializers).
    const { parentSpanContext, ...own } = finished!;
    out.push({ ...own, spanContext: () => ({ ...finished!.spanContext(), spanId: spec.spanId }), ...(spec.parentSpanId && parentSpanContext ? { parentSpanContext } : {}) });
    await p.shutdown();
  }
  return out;
}

describe('OTLP protobuf and OTLP JSON map to the same spans', () => {
  const KEYS = ['gen_ai.usage.input_tokens', 'gen_ai.usage.prompt_tokens', 'gen_ai.usage.output_tokens', 'gen_ai.usage.cache_read.input_tokens', 'gen_ai.usage.reasoning.output_tokens', 'gen_ai.request.model', 'gen_ai.response.model', 'gen_ai.provider.name', 'gen_ai.agent.name', 'gen_ai.operation.name', 'session.id', 'user.id', 'apportion.team', 'apportion.task', 'apportion.attempt', 'apportion.cost_usd', 'apportion.decision_id', 'openinference.span.kind', 'llm.token_count.prompt', 'other.key'];
  const value = fc.oneof(fc.string({ maxLength: 12 }), fc.integer({ min: -5, max: 2_000_000 }), fc.double({ min: -1, max: 1e6, noNaN: true }), fc.boolean(), fc.constantFrom('chat', 'invoke_agent', 'LLM', 'gpt-4o', '12', 'decision-id-0123456789'));
  const hexOf = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('hex'));
  const spanSpec = fc.record({
    traceId: hexOf(16).filter((h) => !/^0+$/.test(h)),
    spanId: hexOf(8).filter((h) => !/^0+$/.test(h)),
    parentSpanId: fc.option(hexOf(8).filter((h) => !/^0+$/.test(h)), { nil: undefined }),
    name: fc.string({ maxLength: 20 }),
    attributes: fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 10 }),
    resource: fc.dictionary(fc.constantFrom('service.name', 'session.id', 'user.id', 'gen_ai.provider.name', 'apportion.task', 'gen_ai.agent.name', 'gen_ai.request.model'), value, { maxKeys: 4 }),
    startNs: fc.bigInt({ min: 1_600_000_000_000_000_000n, max: 1_900_000_000_000_000_000n }),
    durationNs: fc.bigInt({ min: 0n, max: 10_000_000_000n }),
    error: fc.boolean(),
    reversed: fc.boolean(),
  });

  it('for random spans encoded by the official JSON and protobuf serializers (fast-check, seeded)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(spanSpec, { minLength: 1, maxLength: 5 }), async (specs) => {
        const spans = await recordSpans(specs);
        const json = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(spans)!).toString('utf8')) as OtlpRequest;
        const proto = decodeOtlpProto(ProtobufTraceSerializer.serializeRequest(spans)!);
        assert.deepEqual(mapOtlp(proto), mapOtlp(json));
      }),
      { seed: 17, numRuns: 60 },
    );
  });
});
