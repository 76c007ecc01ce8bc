import { Server, ServerCredentials, status, type Metadata, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/**
 * OTLP/gRPC trace ingestion (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), the default protocol of
 * most OpenTelemetry SDKs outside JavaScript. A gRPC request's message is the same ExportTraceServiceRequest bytes as
 * an OTLP/HTTP protobuf body, and its answer the same ExportTraceServiceResponse bytes, so each call is handed, bytes
 * as they are and from the caller's address, to `POST /v1/traces` through `app.inject`: the route's authentication,
 * tenant rule, rate limit, body limit, decoding and mapping apply unchanged (there is one ingestion path, not two).
 * The call's metadata become the request's headers (`authorization: Bearer <key>`, `x-apportion-tenant`); gRPC message
 * compression (gzip) is undone by grpc-js before the bytes arrive. An HTTP error becomes the gRPC status an OTLP
 * exporter acts on (the spec's retryable codes for 429 and 503), with the error's code and message (which names the
 * field) as the status details.
 */
export const TRACE_EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

const identity = (b: Buffer): Buffer => b;

/** The service with raw message bytes: serialising is the HTTP route's job. */
export const TRACE_SERVICE: ServiceDefinition = {
  Export: {
    path: TRACE_EXPORT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** Metadata not passed on as headers: HTTP/2 and gRPC transport fields. */
const TRANSPORT = /^(:|grpc-|content-type$|content-length$|te$|host$|connection$|user-agent$)/;

/** gRPC status of an HTTP status (OTLP exporters retry UNAVAILABLE and RESOURCE_EXHAUSTED only). */
export function grpcStatusOf(http: number): status {
  if (http === 400 || http === 415 || http === 422) return status.INVALID_ARGUMENT;
  if (http === 413 || http === 429) return status.RESOURCE_EXHAUSTED;
  if (http === 401) return status.UNAUTHENTICATED;
  if (http === 403) return status.PERMISSION_DENIED;
  if (http === 404) return status.NOT_FOUND;
  if (http === 503) return status.UNAVAILABLE;
  if (http === 504) return status.DEADLINE_EXCEEDED;
  return status.INTERNAL;
}

function headersOf(md: Metadata): Record<string, string> {
  const out: Record<string, string> = { 'content-type': 'application/x-protobuf' };
  for (const [k, v] of Object.entries(md.getMap())) if (!TRANSPORT.test(k) && typeof v === 'string') out[k] = v;
  return out;
}

/** The caller's address from a grpc-js peer ("127.0.0.1:5000", "[::1]:5000", "ipv4:…"), for the route's per-address rate limit. */
export function peerAddress(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(p);
  if (v6) return v6[1]!;
  const v4 = /^([^:]+):\d+$/.exec(p);
  return v4 ? v4[1]! : p;
}

export interface OtlpGrpcServer {
  readonly port: number;
  /** Stops taking calls and waits for those in flight (at most `graceMs`, then cancels them). */
  close(graceMs?: number): Promise<void>;
}

/** Listens for OTLP/gRPC on `host:port` (port 0: any free port) and forwards every export to the app's `POST /v1/traces`. */
export async function startOtlpGrpc(app: FastifyInstance, host: string, port: number, maxMessageBytes: number, log: Logger): Promise<OtlpGrpcServer> {
  const server = new Server({ 'grpc.max_receive_message_length': maxMessageBytes });
  const impl: UntypedServiceImplementation = {
    Export: (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => {
      app
        .inject({ method: 'POST', url: '/v1/traces', headers: headersOf(call.metadata), payload: call.request, remoteAddress: peerAddress(call.getPeer()) })
        .then((res) => {
          if (res.statusCode === 200) return done(null, res.rawPayload);
          let details = `HTTP ${res.statusCode}`;
          try {
            const body = JSON.parse(res.payload) as { code?: string; message?: string };
            details = `${body.code ?? details}: ${body.message ?? ''}`;
          } catch {
            // Not JSON: the status line says enough.
          }
          if (res.statusCode >= 500) log.warn({ status: res.statusCode, details }, 'OTLP/gRPC export failed');
          done({ code: grpcStatusOf(res.statusCode), details });
        })
        .catch((err: unknown) => {
          log.error({ err }, 'OTLP/gRPC export failed');
          done({ code: status.INTERNAL, details: 'INTERNAL: the export could not be handled' });
        });
    },
  };
  server.addService(TRACE_SERVICE, impl);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  log.info({ host, port: bound }, 'OTLP/gRPC listening');
  return {
    port: bound,
    close: (graceMs = 5000) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
