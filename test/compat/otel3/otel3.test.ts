import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
// Resolved from this workspace's own node_modules: the OpenTelemetry JS 3.x SDK, its OTLP exporters and API 1.10.
import { context, trace, type Span } from '@opentelemetry/api';
import { OTLPTraceExporter as OTLPHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, SimpleSpanProcessor, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { testPrefix } from '../../helpers/env.js';
import { serveDuring } from '../../helpers/serve.js';
import { checkTree, runSession } from '../../helpers/otel-session.js';

/**
 * The OpenTelemetry JS 3.x line (sdk-trace 3, exporters 0.30x, API 1.10), which users on a current SDK send with:
 * the official OTLP/HTTP protobuf and JSON exporters, batch and simple processors, gzip and not, over a real socket
 * to the server's /v1/traces. Every span of every session must arrive and map onto the same tree as from the 2.x
 * SDK (test/costs/otel.test.ts). The 3.x exporters need API ≥ 1.10, which the 2.x SDK refuses, so they are
 * installed in this test workspace (test/compat/otel3/package.json), not at the root.
 */
const prefix = testPrefix('otel3-compat');
const server = serveDuring(prefix, { PORT: '0' });

const childOf = (parent: Span) => trace.setSpan(context.active(), parent);

/** The version of the package a bare specifier resolves to from this file (its exports hide package.json). */
function versionOf(specifier: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.resolve(specifier)));
  while (!existsSync(path.join(dir, 'package.json')) || JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== specifier) dir = path.dirname(dir);
  return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}

describe('OpenTelemetry JS 3.x: the official OTLP exporters over a socket', () => {
  it('runs the 3.x line, not the root 2.x one', () => {
    assert.match(versionOf('@opentelemetry/sdk-trace'), /^3\./);
    assert.match(versionOf('@opentelemetry/exporter-trace-otlp-proto'), /^0\.(30\d|[3-9]\d\d)\./);
    assert.match(versionOf('@opentelemetry/exporter-trace-otlp-http'), /^0\.(30\d|[3-9]\d\d)\./);
    assert.doesNotMatch(versionOf('@opentelemetry/api'), /^1\.[0-9]\./);
  });
  const cases = [
    ['protobuf', 'batch', true],
    ['protobuf', 'batch', false],
    ['protobuf', 'simple', false],
    ['json', 'batch', true],
    ['json', 'simple', false],
  ] as const;
  for (const [wire, processor, gzip] of cases) {
    it(`${wire}, ${processor} processor${gzip ? ', gzip' : ''}: every span of every session arrives and maps onto its tree`, async () => {
      const options = { url: `${server.rt.url}/v1/traces`, compression: gzip ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE };
      const exporter: SpanExporter = wire === 'protobuf' ? new OTLPProtoExporter(options) : new OTLPHttpJsonExporter(options);
      const spanProcessor = processor === 'batch' ? new BatchSpanProcessor({ exporter, maxExportBatchSize: 7 }) : new SimpleSpanProcessor({ exporter });
      const provider = new TracerProvider({ resource: resourceFromAttributes({ 'service.name': 'otel3-test' }), spanProcessors: [spanProcessor] });
      const sessions = Array.from({ length: 4 }, (_, i) => `otel3-${wire}-${processor}-${gzip}-${i}`);
      for (const s of sessions) runSession(provider.getTracer('t'), childOf, s);
      await provider.forceFlush();
      await provider.shutdown();
      for (const s of sessions) {
        const res = await fetch(`${server.rt.url}/v1/sessions/${s}/cost-tree`);
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        checkTree(body, s);
      }
    });
  }
});
