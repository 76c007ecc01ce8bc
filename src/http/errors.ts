import { maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.js';
import { isRedisUnavailable } from '../redis/unavailable.js';

interface ValidationItem {
  instancePath?: string;
  schemaPath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** What a validation error is read against: the route's schema for that part of the request, and its value. */
export interface ValidationSource {
  readonly schema?: unknown;
  readonly data?: unknown;
}

/** Follows a JSON pointer (`/a/0/b`, or a schemaPath `#/a/b`) into a parsed document; undefined if it leads nowhere. */
function at(doc: unknown, pointer: string): unknown {
  let cur = doc;
  for (const raw of pointer.replace(/^#/, '').split('/').slice(1)) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** The properties a union branch fixes with `const` (its discriminator, e.g. `type: "categorical"`). */
function consts(branch: unknown): [string, unknown][] {
  const props = typeof branch === 'object' && branch !== null ? (branch as { properties?: unknown }).properties : undefined;
  if (typeof props !== 'object' || props === null) return [];
  return Object.entries(props as Record<string, unknown>).flatMap(([k, p]) =>
    typeof p === 'object' && p !== null && 'const' in p ? [[k, (p as { const: unknown }).const] as [string, unknown]] : [],
  );
}

/**
 * The error to report among ajv's. A union (anyOf/oneOf) that no branch matched lists every branch's first error,
 * then its own: the first is the first branch's, usually not the one the client meant (`hashBuckets is not an
 * allowed property` from the numeric branch for a categorical feature whose hashBuckets is too large). When the
 * branches are told apart by a `const` property (`type`) and the value's property matches one branch, that branch's
 * error is reported (nested unions alike); when it matches none, the message names the property and its allowed
 * values. A union of constants (a string enum) names its allowed values. Otherwise (no source, no discriminator),
 * the first error, as before.
 */
function pick(items: readonly ValidationItem[], source: ValidationSource | undefined): ValidationItem | undefined {
  let list = items;
  for (let depth = 0; source && depth < 8; depth++) {
    // The outermost union among the errors (the shortest schema path).
    const union = list
      .filter((v) => (v.keyword === 'anyOf' || v.keyword === 'oneOf') && typeof v.schemaPath === 'string')
      .sort((x, y) => x.schemaPath!.length - y.schemaPath!.length)[0];
    if (!union) break;
    const base = union.schemaPath!;
    const branches = at(source.schema, base);
    if (!Array.isArray(branches)) break;
    // A union of constants (`"REJECT" | "ALLOW_IF_AVAILABLE" | …`): ajv says each branch's "must be equal to
    // constant", which names no value; name the allowed ones.
    if (branches.length > 0 && branches.every((b) => typeof b === 'object' && b !== null && 'const' in b)) {
      const allowed = branches.map((b) => JSON.stringify((b as { const: unknown }).const)).join(', ');
      return { instancePath: union.instancePath ?? '', keyword: 'enum', message: `must be one of ${allowed}` };
    }
    const data = at(source.data, union.instancePath ?? '');
    if (typeof data !== 'object' || data === null) break;
    const fixed = branches.map(consts);
    if (fixed.some((c) => c.length === 0)) break;
    const rec = data as Record<string, unknown>;
    const i = fixed.findIndex((c) => c.every(([k, want]) => rec[k] === want));
    if (i < 0) {
      // No branch's discriminator matches: name it, with the values the branches allow.
      const key = fixed[0]!.find(([k]) => fixed.every((c) => c.some(([k2]) => k2 === k)) && !fixed.some((c) => c.some(([k2, w]) => k2 === k && rec[k] === w)));
      if (!key) break;
      const allowed = fixed.map((c) => JSON.stringify(c.find(([k2]) => k2 === key[0])![1])).join(', ');
      return { instancePath: `${union.instancePath ?? ''}/${key[0]}`, keyword: 'enum', message: `must be one of ${allowed}` };
    }
    const inBranch = list.filter((v) => v.schemaPath?.startsWith(`${base}/${i}/`));
    if (inBranch.length === 0) break;
    list = inBranch;
  }
  return list[0];
}

/**
 * Turns an ajv validation error into a message that names the offending field, e.g. `body/quality must be <= 1`.
 * `source` (the route's schema and the request's value for `context`) lets a union's error come from the branch
 * the value chose (see pick).
 */
export function describeValidation(context: string | undefined, items: readonly ValidationItem[], source?: ValidationSource): string {
  const v = pick(items, source);
  if (!v) return ERROR_CATALOG.VALIDATION_FAILED.message;
  let field = `${context ?? 'body'}${v.instancePath ?? ''}`;
  const p = v.params ?? {};
  if (v.keyword === 'required' && typeof p.missingProperty === 'string') field += `/${p.missingProperty}`;
  if (v.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
    return `${field}/${p.additionalProperty} is not an allowed property`;
  }
  if (v.keyword === 'required') return `${field} is required`;
  // A pattern names no range or meaning ("must match pattern \"^[1-9][0-9]{0,3}$\""): the field's own description says
  // what it takes ("Entries to return, newest first: 1 to 9999."), so it follows.
  if (v.keyword === 'pattern' && source && v.schemaPath) {
    const node = at(source.schema, v.schemaPath.replace(/\/pattern$/, ''));
    const description = typeof node === 'object' && node !== null ? (node as { description?: unknown }).description : undefined;
    if (typeof description === 'string' && description !== '') return `${field} ${v.message ?? 'is invalid'} (${description})`;
  }
  return `${field} ${v.message ?? 'is invalid'}`;
}

/** The schema and value a validation error of `context` was raised against, from the request. */
export function validationSource(req: FastifyRequest | undefined, context: string | undefined): ValidationSource | undefined {
  if (!req) return undefined;
  const schemas = req.routeOptions?.schema as Record<string, unknown> | undefined;
  const part = context ?? 'body';
  const data = part === 'body' ? req.body : part === 'params' ? req.params : part === 'querystring' ? req.query : part === 'headers' ? req.headers : undefined;
  return { schema: schemas?.[part], data };
}

/**
 * The router's longest path parameter (app.ts passes it to Fastify, whose default is 100). It is above the longest
 * id a route names: a tenant's stored session id `<tenant>~<sessionId>` is at most 128 + 1 + 256 = 385 characters,
 * and a trace's `<tenant>~trace-<traceId>` at most 128 + 1 + 6 + 128 = 263, so every session a span can land in opens
 * in its cost tree for the tenant's key and the operator's (costs/schema.ts storedIdProblem checks it per span).
 */
export const MAX_PARAM_LENGTH = 400;

/** Maps any error to the stable body `{ statusCode, code, error, message }`. */
export function toErrorBody(err: unknown, req?: FastifyRequest): { statusCode: number; code: ErrorCode; error: string; message: string; details?: Record<string, unknown> } {
  const body = (code: ErrorCode, message: string, details?: Readonly<Record<string, unknown>>) => {
    const statusCode = ERROR_CATALOG[code].status;
    return { statusCode, code, error: httpReason(statusCode), message, ...(details ? { details: { ...details } } : {}) };
  };
  if (err instanceof AppError) return body(err.code, err.statusCode >= 500 ? withoutCause(err.message) : err.message, err.details);
  const fe = err as FastifyError & { validation?: ValidationItem[]; validationContext?: string };
  if (fe.validation) return body('VALIDATION_FAILED', describeValidation(fe.validationContext, fe.validation, validationSource(req, fe.validationContext)));
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
  const body = toErrorBody(err, req);
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
