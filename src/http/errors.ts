import { maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.js';
import { isRedisUnavailable } from '../redis/unavailable.js';

interface ValidationItem {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Turns an ajv validation error into a message that names the offending field, e.g. `body/quality must be <= 1`. */
export function describeValidation(context: string | undefined, items: readonly ValidationItem[]): string {
  const v = items[0];
  if (!v) return ERROR_CATALOG.VALIDATION_FAILED.message;
  let field = `${context ?? 'body'}${v.instancePath ?? ''}`;
  const p = v.params ?? {};
  if (v.keyword === 'required' && typeof p.missingProperty === 'string') field += `/${p.missingProperty}`;
  if (v.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
    return `${field}/${p.additionalProperty} is not an allowed property`;
  }
  if (v.keyword === 'required') return `${field} is required`;
  return `${field} ${v.message ?? 'is invalid'}`;
}

/**
 * The router's longest path parameter (app.ts passes it to Fastify, whose default is 100). It is above the longest
 * id a route names: a tenant's stored session id `<tenant>~<sessionId>` is at most 128 + 1 + 256 = 385 characters,
 * and a trace's `<tenant>~trace-<traceId>` at most 128 + 1 + 6 + 128 = 263, so every session a span can land in opens
 * in its cost tree for the tenant's key and the operator's (costs/schema.ts storedIdProblem checks it per span).
 */
export const MAX_PARAM_LENGTH = 400;

/** Maps any error to the stable body `{ statusCode, code, error, message }`. */
export function toErrorBody(err: unknown): { statusCode: number; code: ErrorCode; error: string; message: string; details?: Record<string, unknown> } {
  const body = (code: ErrorCode, message: string, details?: Readonly<Record<string, unknown>>) => {
    const statusCode = ERROR_CATALOG[code].status;
    return { statusCode, code, error: httpReason(statusCode), message, ...(details ? { details: { ...details } } : {}) };
  };
  if (err instanceof AppError) return body(err.code, err.statusCode >= 500 ? withoutCause(err.message) : err.message, err.details);
  const fe = err as FastifyError & { validation?: ValidationItem[]; validationContext?: string };
  if (fe.validation) return body('VALIDATION_FAILED', describeValidation(fe.validationContext, fe.validation));
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return body('INVALID_JSON', `body: ${fe.message}`);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return body('BODY_TOO_LARGE', `body: ${fe.message}`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return body('UNSUPPORTED_MEDIA_TYPE', `headers/content-type: ${fe.message}`);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return body('VALIDATION_FAILED', `headers/content-length: ${fe.message}`);
    // Raised by the router before any route runs (Fastify's frameworkErrors): a path parameter longer than the
    // router's limit (100 characters; every id the API accepts is shorter), or one that is not valid percent-encoding.
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return body('VALIDATION_FAILED', `params: a path parameter is longer than ${MAX_PARAM_LENGTH} characters`);
    case 'FST_ERR_BAD_URL':
      return body('VALIDATION_FAILED', 'params: a path parameter is not valid percent-encoding');
  }
  if (err instanceof SyntaxError) return body('INVALID_JSON', `body: ${err.message}`);
  // A store that cannot answer now (a stall, a restart, a failover) is a 503 the client retries, on every route: the
  // routes with their own mapping (outcomes, reservations, spans) say more, the others say this.
  if (isRedisUnavailable(err)) return body('REDIS_UNAVAILABLE', ERROR_CATALOG.REDIS_UNAVAILABLE.message);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { statusCode: fe.statusCode, code: 'VALIDATION_FAILED', error: httpReason(fe.statusCode), message: fe.message };
  }
  return body('INTERNAL', ERROR_CATALOG.INTERNAL.message);
}

/**
 * 5xx messages never carry a driver's words (addresses, hosts, server replies): by convention the cause follows
 * the first `: ` of the message, and only what precedes it is answered; the whole error goes to the log.
 */
function withoutCause(message: string): string {
  const cut = message.indexOf(': ');
  return cut < 0 ? message : message.slice(0, cut);
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function httpReason(status: number): string {
  return REASONS[status] ?? 'Error';
}

export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const body = toErrorBody(err);
  // Say which limit and how to move it: an OTLP exporter's default batch (512 spans) with captured prompts is
  // often over it, and its whole batch is then refused.
  if (body.code === 'BODY_TOO_LARGE') {
    const limit = req.routeOptions?.bodyLimit;
    body.message = `body: larger than this route's limit${typeof limit === 'number' ? ` of ${limit} bytes` : ''} (APPORTION_BODY_LIMIT_BYTES); send smaller batches (OpenTelemetry: OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise the limit`;
  }
  // A 503 is a dependency (Redis, the queue) unavailable for a while: expected under faults, answered with a
  // stable code and retried by clients, so a warning; any other 5xx is a defect.
  if (body.statusCode === 503) req.log.warn({ err, code: body.code }, 'request failed: dependency unavailable');
  else if (body.statusCode >= 500) req.log.error({ err }, 'request failed');
  void reply.status(body.statusCode).send(body);
}

/** The timeouts a client error's message names (`Config`'s, in ms); a listener without its own says nothing of them. */
export interface ClientLimits {
  readonly requestTimeoutMs?: number;
  readonly headersTimeoutMs?: number;
}

/** The error body of a connection-level client error (Node's `clientError`: a timeout, or bytes that are not HTTP). */
export function clientErrorBody(err: { code?: string }, limits: ClientLimits = {}): ReturnType<typeof toErrorBody> {
  const body = (code: ErrorCode, message: string) => ({ statusCode: ERROR_CATALOG[code].status, code, error: httpReason(ERROR_CATALOG[code].status), message });
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT': {
      const within = [
        limits.headersTimeoutMs !== undefined ? `the headers within ${limits.headersTimeoutMs} ms (APPORTION_HEADERS_TIMEOUT_MS)` : undefined,
        limits.requestTimeoutMs !== undefined ? `the whole request within ${limits.requestTimeoutMs} ms (APPORTION_REQUEST_TIMEOUT_MS)` : undefined,
      ].filter((w) => w !== undefined);
      return body('REQUEST_TIMEOUT', `request: not received in time${within.length > 0 ? ` (${within.join(', ')})` : ''}; the connection is closed`);
    }
    case 'HPE_HEADER_OVERFLOW':
      return body('HEADERS_TOO_LARGE', `headers: larger than ${maxHeaderSize} bytes in all`);
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return body('BODY_TOO_LARGE', 'body: a chunk extension is too large');
    default:
      // The parser's code only (HPE_INVALID_METHOD, HPE_INVALID_HEADER_TOKEN…): never the client's bytes.
      return body('BAD_REQUEST', `request: malformed HTTP${err.code && /^[A-Z0-9_]{1,64}$/.test(err.code) ? ` (${err.code})` : ''}`);
  }
}

/**
 * Fastify's `clientErrorHandler`: what Node answers on a connection whose request never reached a route (a timeout,
 * bytes that are not HTTP, headers too large) gets the same `{ statusCode, code, error, message }` body as every
 * other error, then the connection is closed. As Node does, nothing is written once a response has started on the
 * connection, and a connection the client reset gets nothing.
 */
export function clientErrorHandler(limits: ClientLimits = {}): (this: FastifyInstance, err: Error & { code?: string }, socket: Socket) => void {
  return function handle(this: FastifyInstance, err, socket) {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const res = (socket as Socket & { _httpMessage?: { _headerSent?: boolean } | null })._httpMessage;
    if (socket.writable && !res?._headerSent) {
      const body = clientErrorBody(err, limits);
      const json = JSON.stringify(body);
      this.log.debug({ code: body.code, cause: err.code }, 'client error');
      socket.write(`HTTP/1.1 ${body.statusCode} ${body.error}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`);
    }
    socket.destroy(err);
  };
}
