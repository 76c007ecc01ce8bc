import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials, makeGenericClientConstructor, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { context, trace, type Span } from '@opentelemetry/api';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ExportTraceServiceResponse } from '../../src/costs/otlp-proto.js';
import { grpcStatusOf, peerAddress, TRACE_SERVICE } from '../../src/http/otlp-grpc.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { checkTree, runSession } from '../helpers/otel-session.js';

/**
 * OTLP/gRPC (APPORTION_OTLP_GRPC_PORT) over a real socket: the official gRPC trace exporter (batch and simple
 * processors, gzip and not) must get every span of every session onto the same cost tree as OTLP/HTTP; a raw grpc-js
 * client checks what the bridge to POST /v1/traces must keep: the key in the metadata is the route's key (none, or a
 * wrong one: UNAUTHENTICATED), spans land in the key's tenant and another tenant cannot read them, bad bytes are
 * INVALID_ARGUMENT naming the error code, and a rejected span comes back as partialSuccess in the response message.
 */
const prefix = testPrefix('otlp-grpc');
const OPERATOR = 'otlp-grpc-operator-key-0123456789';
let rt: Running;
const key: Record<'acme' | 'beta', string> = { acme: '', beta: '' };

async function http(k: string, method: 'GET' | 'POST', url: string, payload?: object): Promise<{ status: number; body: any }> {
  const res = await rt.app!.inject({ method, url, headers: { authorization: `Bearer ${k}` }, ...(payload ? { payload } : {}) });
  return { status: res.statusCode, body: res.json() };
}

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0', APPORTION_OTLP_GRPC_PORT: '0', APPORTION_ADMIN_KEY: OPERATOR });
  for (const t of ['acme', 'beta'] as const) key[t] = (await http(OPERATOR, 'POST', '/v1/keys', { tenant: t, role: 'admin', name: 'otlp' })).body.key;
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

const childOf = (parent: Span) => trace.setSpan(context.active(), parent);
const target = () => `127.0.0.1:${rt.grpcPort}`;

/** The spans of one session, recorded in memory by the real SDK (for raw calls). */
async function recorded(session: string, extra?: (tracer: ReturnType<NodeTracerProvider['getTracer']>) => void): Promise<ReadableSpan[]> {
  const memory = new InMemorySpanExporter();
  const p = new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'grpc-raw' }), spanProcessors: [new SimpleSpanProcessor(memory)] });
  runSession(p.getTracer('t'), childOf, session);
  extra?.(p.getTracer('t'));
  await p.forceFlush();
  const spans = memory.getFinishedSpans().slice();
  await p.shutdown();
  return spans;
}

const Client = makeGenericClientConstructor(TRACE_SERVICE, 'TraceService');
function exportRaw(body: Uint8Array, apiKey?: string): Promise<{ err: ServiceError | null; res: Buffer | undefined }> {
  const client = new Client(target(), credentials.createInsecure());
  const md = new Metadata();
  if (apiKey) md.set('authorization', `Bearer ${apiKey}`);
  return new Promise((resolve) =>
    (client as any).Export(Buffer.from(body), md, (err: ServiceError | null, res?: Buffer) => {
      client.close();
      resolve({ err, res });
    }),
  );
}

describe('OTLP/gRPC: the official gRPC exporter over a socket', () => {
  for (const [processor, gzip] of [['batch', true], ['batch', false], ['simple', false]] as const) {
    it(`${processor} processor${gzip ? ', gzip' : ''}: every span of every session arrives and maps onto its tree`, async () => {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${key.acme}`);
      const exporter = new OTLPTraceExporter({ url: `http://${target()}`, metadata, ...(gzip ? { compression: CompressionAlgorithm.GZIP } : {}) });
      const span = processor === 'batch' ? new BatchSpanProcessor(exporter, { maxExportBatchSize: 7 }) : new SimpleSpanProcessor(exporter);
      const p = new NodeTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'grpc-test' }), spanProcessors: [span] });
      const sessions = Array.from({ length: 5 }, (_, i) => `grpc-${processor}-${gzip}-${i}`);
      for (const s of sessions) runSession(p.getTracer('t'), childOf, s);
      await p.forceFlush();
      await p.shutdown();
      for (const s of sessions) {
        const t = await http(key.acme, 'GET', `/v1/sessions/${s}/cost-tree`);
        assert.equal(t.status, 200, JSON.stringify(t.body));
        checkTree(t.body, s, 'acme');
      }
    });
  }
});

describe('OTLP/gRPC: what the bridge to POST /v1/traces keeps', () => {
  it('the metadata key is the route key: none or unknown is UNAUTHENTICATED and stores nothing', async () => {
    const body = ProtobufTraceSerializer.serializeRequest(await recorded('grpc-nokey'))!;
    for (const k of [undefined, 'not-a-key-0123456789abcdef']) {
      const { err } = await exportRaw(body, k);
      assert.equal(err?.code, status.UNAUTHENTICATED, String(err?.details));
      assert.match(err!.details, /^UNAUTHORIZED: headers\/authorization/);
    }
    assert.equal((await http(OPERATOR, 'GET', '/v1/sessions/grpc-nokey/cost-tree')).status, 404);
  });

  it('spans land in the tenant of the key that sent them; the other tenant cannot read them', async () => {
    const { err, res } = await exportRaw(ProtobufTraceSerializer.serializeRequest(await recorded('grpc-tenant'))!, key.beta);
    assert.equal(err, null);
    assert.equal(res!.byteLength, 0, 'full success is an empty response message');
    const mine = await http(key.beta, 'GET', '/v1/sessions/grpc-tenant/cost-tree');
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    checkTree(mine.body, 'grpc-tenant', 'beta');
    const theirs = await http(key.acme, 'GET', '/v1/sessions/grpc-tenant/cost-tree');
    assert.equal(theirs.status, 404);
    assert.equal(theirs.body.code, 'SESSION_NOT_FOUND');
  });

  it('maps the caller\u2019s address and the HTTP statuses exporters act on', () => {
    assert.deepEqual(['127.0.0.1:5000', '[::1]:5000', 'ipv4:10.0.0.2:443', 'ipv6:[fe80::1]:8'].map(peerAddress), ['127.0.0.1', '::1', '10.0.0.2', 'fe80::1']);
    assert.deepEqual([400, 401, 403, 413, 415, 429, 500, 503].map(grpcStatusOf), [
      status.INVALID_ARGUMENT,
      status.UNAUTHENTICATED,
      status.PERMISSION_DENIED,
      status.RESOURCE_EXHAUSTED,
      status.INVALID_ARGUMENT,
      status.RESOURCE_EXHAUSTED,
      status.INTERNAL,
      status.UNAVAILABLE,
    ]);
  });

  it('bytes that are not a message are INVALID_ARGUMENT with the error code', async () => {
    const { err } = await exportRaw(Buffer.from('not a protobuf message'), key.acme);
    assert.equal(err?.code, status.INVALID_ARGUMENT);
    assert.match(err!.details, /^INVALID_PROTOBUF: /);
  });

  it('a rejected span comes back as partialSuccess in the response message, the rest stored', async () => {
    const spans = await recorded('grpc-partial', (tracer) =>
      // Started in 1971: out of range, rejected.
      tracer.startSpan('chat', { attributes: { 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 3 }, startTime: [31_536_000, 0] }).end([31_536_001, 0]),
    );
    const { err, res } = await exportRaw(ProtobufTraceSerializer.serializeRequest(spans)!, key.acme);
    assert.equal(err, null);
    const answer = ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(new Uint8Array(res!))) as { partialSuccess?: { rejectedSpans?: unknown } };
    assert.equal(Number(answer.partialSuccess?.rejectedSpans), 1, JSON.stringify(answer));
    checkTree((await http(key.acme, 'GET', '/v1/sessions/grpc-partial/cost-tree')).body, 'grpc-partial', 'acme');
  });
});
