import protobuf from 'protobufjs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';
import type { OtlpRequest } from './otlp.js';

/**
 * OTLP/HTTP protobuf (`application/x-protobuf`) → message objects that `mapOtlp` reads as it reads OTLP JSON.
 *
 * The wire decoding is protobufjs's (reflection with generated per-type decoders). The schema below is the part of
 * opentelemetry-proto's `collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`,
 * `resource/v1/resource.proto` and `common/v1/common.proto` (v1.x, stable) that cost attribution reads, with the
 * official field numbers and types; every field left out (events, links, trace state, dropped counts, flags,
 * schema URLs, scope attributes) is skipped by the decoder as an unknown field, as protobuf requires, and costs
 * nothing to map. The decoded message objects are mapped in place by `mapOtlp`, the JSON route's mapping (no
 * intermediate copy): it reads bytes ids as hex, fixed64 nanoseconds as exact integer milliseconds and int64
 * attribute values as numbers.
 */
// Declared as proto2 with every field optional: the wire format is the same as upstream's proto3, but strings then
// decode through Node's Buffer#utf8Slice into flat strings (invalid UTF-8 becomes U+FFFD) instead of protobufjs's
// strict proto3 path, which builds strings by concatenation that every later comparison has to flatten; it made
// mapping the decoded spans about a third cheaper.
const SCHEMA = `
syntax = "proto2";
package opentelemetry.proto;

// Upstream declares these seven as one oneof (value). The wire format is the same; declared as separate fields
// with explicit presence (a false, 0 or "" that was sent stays present, as in the oneof), a decoded
// value holds just the member that was sent, and the decoder skips protobufjs's oneof bookkeeping (deleting the
// other members from every value), which cost more than the rest of the decoding.
message AnyValue {
  optional string string_value = 1;
  optional bool bool_value = 2;
  optional int64 int_value = 3;
  optional double double_value = 4;
  optional ArrayValue array_value = 5;
  optional KeyValueList kvlist_value = 6;
  optional bytes bytes_value = 7;
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue {
  optional string key = 1;
  optional AnyValue value = 2;
}
message Resource { repeated KeyValue attributes = 1; }
message Status {
  optional string message = 2;
  optional int32 code = 3;
}
message Span {
  optional bytes trace_id = 1;
  optional bytes span_id = 2;
  optional bytes parent_span_id = 4;
  optional string name = 5;
  optional int32 kind = 6;
  optional fixed64 start_time_unix_nano = 7;
  optional fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  optional Status status = 15;
}
message ScopeSpans { repeated Span spans = 2; }
message ResourceSpans {
  optional Resource resource = 1;
  repeated ScopeSpans scope_spans = 2;
}
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTracePartialSuccess {
  optional int64 rejected_spans = 1;
  optional string error_message = 2;
}
message ExportTraceServiceResponse { optional ExportTracePartialSuccess partial_success = 1; }
`;

const root = protobuf.parse(SCHEMA, { keepCase: false }).root;
export const ExportTraceServiceRequest = root.lookupType('opentelemetry.proto.ExportTraceServiceRequest');
export const ExportTraceServiceResponse = root.lookupType('opentelemetry.proto.ExportTraceServiceResponse');

// Decoded AnyValues are read in place: without prototype defaults, the member that was sent is the only one
// present, as in OTLP JSON.
const anyValue = root.lookupType('opentelemetry.proto.AnyValue');
for (const f of anyValue.fieldsArray) delete (anyValue.ctor.prototype as Record<string, unknown>)[f.name];

/**
 * Decodes an `application/x-protobuf` ExportTraceServiceRequest into protobufjs message objects, which `mapOtlp`
 * reads like OTLP JSON (ids as bytes, 64-bit integers as Long). Throws protobufjs's error on bytes that are not
 * a valid message.
 */
export function decodeOtlpProto(body: Uint8Array): OtlpRequest {
  return ExportTraceServiceRequest.decode(body) as unknown as OtlpRequest;
}

/** What POST /v1/traces takes (named by its 415). */
export const OTLP_MEDIA_TYPES = ['application/json', 'application/x-protobuf'] as const;

/**
 * Content-type parsers of the costs routes: `application/x-protobuf` on POST /v1/traces (decoded into message
 * objects that the JSON route's validation, mapping and handler take as they are; the answer is re-encoded as
 * protobuf on the way out), and a catch-all whose 415 names the types the route accepts. Gzip is undone before (preParsing), and the body limit applies to the inflated bytes.
 */
export function otlpContentTypes(app: FastifyInstance): void {
  const protobufRequests = new WeakSet<FastifyRequest>();
  app.addContentTypeParser('application/x-protobuf', { parseAs: 'buffer' }, (req, body, done) => {
    if (req.routeOptions.url !== '/v1/traces') return done(unsupported(req), undefined);
    try {
      const decoded = decodeOtlpProto(body as Buffer);
      protobufRequests.add(req);
      done(null, decoded);
    } catch (e) {
      done(new AppError('INVALID_PROTOBUF', `body: not a valid OTLP ExportTraceServiceRequest (${(e as Error).message})`), undefined);
    }
  });
  app.addContentTypeParser('*', (req, _payload, done) => done(unsupported(req), undefined));
  // OTLP/HTTP answers a protobuf request with a protobuf ExportTraceServiceResponse (errors stay JSON bodies).
  app.addHook('onSend', async (req, reply, payload) => {
    if (!protobufRequests.has(req) || reply.statusCode !== 200 || typeof payload !== 'string') return payload;
    void reply.header('content-type', 'application/x-protobuf');
    return Buffer.from(encodeOtlpResponse(JSON.parse(payload) as OtlpResponseJson));
  });
}

interface OtlpResponseJson {
  readonly partialSuccess?: { readonly rejectedSpans: number; readonly errorMessage: string };
}

/** The route's JSON answer as a protobuf ExportTraceServiceResponse (`{}` encodes to zero bytes). */
export function encodeOtlpResponse(res: OtlpResponseJson): Uint8Array {
  return ExportTraceServiceResponse.encode(ExportTraceServiceResponse.fromObject(res)).finish();
}

function unsupported(req: FastifyRequest): AppError {
  const accepted = req.routeOptions.url === '/v1/traces' ? OTLP_MEDIA_TYPES.join(' or ') : 'application/json';
  const got = req.headers['content-type'];
  return new AppError('UNSUPPORTED_MEDIA_TYPE', `headers/content-type: ${got ? `"${got}"` : 'missing'} is not supported; ${req.method} ${req.routeOptions.url} accepts ${accepted}`);
}
