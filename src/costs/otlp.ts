import { clean, usdToNano, type Span, type SpanKind, type SpanStatus } from './span.js';
import { parseTime } from './schema.js';

/**
 * OTLP/HTTP (ExportTraceServiceRequest) → canonical spans, reading the OpenTelemetry GenAI semantic
 * conventions, their deprecated names and OpenInference's `llm.*` attributes. Each attribute list is walked
 * once per span (a switch on the key), never re-serialised. The request is OTLP JSON, or the protobuf message
 * objects of otlp-proto.ts read in place: ids as bytes, 64-bit integers as protobufjs Longs.
 */

/** A protobufjs (long.js) 64-bit integer. */
interface Long64 {
  readonly low: number;
  readonly high: number;
  readonly unsigned: boolean;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number | Long64;
  doubleValue?: number | string;
  boolValue?: boolean;
}
interface KeyValue {
  key?: string;
  value?: AnyValue;
}
interface OtlpSpan {
  traceId?: string | Uint8Array;
  spanId?: string | Uint8Array;
  parentSpanId?: string | Uint8Array;
  name?: string;
  startTimeUnixNano?: string | number | Long64;
  endTimeUnixNano?: string | number | Long64;
  attributes?: KeyValue[];
  status?: { code?: number | string };
}
interface ScopeSpans {
  spans?: OtlpSpan[];
}
interface ResourceSpans {
  resource?: { attributes?: KeyValue[] };
  scopeSpans?: ScopeSpans[];
  /** Pre-1.0 name of scopeSpans, still sent by some exporters. */
  instrumentationLibrarySpans?: ScopeSpans[];
}
export interface OtlpRequest {
  resourceSpans?: ResourceSpans[];
}

export interface OtlpMapped {
  readonly spans: Span[];
  readonly rejected: { traceId?: string; spanId?: string; reason: string }[];
}

/**
 * What we read from attributes (span attributes win over resource attributes). A field is set to undefined when an
 * attribute that names it cannot be read (a later readable alias may fill it again).
 */
interface Attrs {
  input?: number | undefined;
  output?: number | undefined;
  cacheRead?: number | undefined;
  cacheWrite?: number | undefined;
  reasoning?: number | undefined;
  requestModel?: string | undefined;
  responseModel?: string | undefined;
  provider?: string | undefined;
  agent?: string | undefined;
  operation?: string | undefined;
  session?: string | undefined;
  conversation?: string | undefined;
  user?: string | undefined;
  customer?: string | undefined;
  team?: string | undefined;
  task?: string | undefined;
  decisionId?: string | undefined;
  attempt?: number | undefined;
  costUsd?: number | undefined;
  oiKind?: string | undefined;
}

/** A Long as a number (exact up to 2^53; beyond, the nearest double, as `Number("…")` does for OTLP JSON). */
function longNumber(v: Long64): number {
  return (v.unsigned ? v.high >>> 0 : v.high | 0) * 4_294_967_296 + (v.low >>> 0);
}

/**
 * A protobufjs Long (the protobuf path). Another object sent in OTLP JSON where an int64 goes (`null`, `{}`, `[]`,
 * `{"high":1}`) is not one: it reads as an unreadable value, never as a number. (A JSON object with numeric `high`
 * and `low` does read as the Long it spells.)
 */
function isLong(v: unknown): v is Long64 {
  return typeof v === 'object' && v !== null && typeof (v as Long64).low === 'number' && typeof (v as Long64).high === 'number';
}

/**
 * The attribute as text. OTLP JSON is not checked against the schema below the top level, so each member is read
 * only with the type OTLP gives it (stringValue a string; intValue an int64: a decimal string, an integer or a Long;
 * doubleValue a finite number; boolValue a boolean). A member of another type, an arrayValue, kvlistValue or
 * bytesValue reads as unreadable (undefined), like any other attribute value that cannot be read.
 */
function str(v: AnyValue | undefined): string | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const s: unknown = v.stringValue;
  if (typeof s === 'string') return s === '' ? undefined : s;
  const i: unknown = v.intValue;
  if (typeof i === 'string' && /^-?\d{1,20}$/.test(i)) return i;
  if (typeof i === 'number' && Number.isSafeInteger(i)) return String(i);
  if (isLong(i)) return String(longNumber(i));
  const d: unknown = v.doubleValue;
  if (typeof d === 'number' && Number.isFinite(d)) return String(d);
  const b: unknown = v.boolValue;
  if (typeof b === 'boolean') return String(b);
  return undefined;
}

/** A number from a string or number member (or a Long); anything else is NaN. */
function numberOf(raw: unknown): number {
  if (isLong(raw)) return longNumber(raw);
  if (typeof raw === 'number') return raw;
  return typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
}

/**
 * Integers may come as strings or numbers (OTLP JSON int64); anything else is ignored. Not bounded here: a count
 * above what a span may carry (MAX_TOKENS) rejects the span, it is not dropped (see mapOtlp).
 */
function int(v: AnyValue | undefined): number | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const n = numberOf(v.intValue ?? v.doubleValue ?? v.stringValue);
  return Number.isFinite(n) && n >= 0 ? Math.round(n) : undefined;
}

function num(v: AnyValue | undefined): number | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const n = numberOf(v.doubleValue ?? v.intValue ?? v.stringValue);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

function read(list: KeyValue[] | undefined, into: Attrs): void {
  if (!Array.isArray(list)) return;
  for (const kv of list) {
    const v = kv?.value;
    switch (kv?.key) {
      case 'gen_ai.usage.input_tokens':
        into.input = int(v);
        break;
      case 'gen_ai.usage.prompt_tokens':
      case 'llm.token_count.prompt':
        into.input ??= int(v);
        break;
      case 'gen_ai.usage.output_tokens':
        into.output = int(v);
        break;
      case 'gen_ai.usage.completion_tokens':
      case 'llm.token_count.completion':
        into.output ??= int(v);
        break;
      case 'gen_ai.usage.cache_read.input_tokens':
        into.cacheRead = int(v);
        break;
      case 'gen_ai.usage.cache_read_input_tokens':
      case 'llm.token_count.prompt_details.cache_read':
        into.cacheRead ??= int(v);
        break;
      case 'gen_ai.usage.cache_creation.input_tokens':
        into.cacheWrite = int(v);
        break;
      case 'gen_ai.usage.cache_creation_input_tokens':
      case 'llm.token_count.prompt_details.cache_write':
        into.cacheWrite ??= int(v);
        break;
      case 'gen_ai.usage.reasoning.output_tokens':
        into.reasoning = int(v);
        break;
      case 'llm.token_count.completion_details.reasoning':
        into.reasoning ??= int(v);
        break;
      case 'gen_ai.request.model':
        into.requestModel = str(v);
        break;
      case 'gen_ai.response.model':
        into.responseModel = str(v);
        break;
      case 'llm.model_name':
        into.requestModel ??= str(v);
        break;
      case 'gen_ai.provider.name':
        into.provider = str(v);
        break;
      case 'gen_ai.system':
      case 'llm.provider':
      case 'llm.system':
        into.provider ??= str(v);
        break;
      case 'gen_ai.agent.name':
      case 'apportion.agent':
        into.agent = str(v);
        break;
      case 'gen_ai.agent.id':
      case 'agent.name':
        into.agent ??= str(v);
        break;
      case 'gen_ai.operation.name':
        into.operation = str(v);
        break;
      case 'openinference.span.kind':
        into.oiKind = str(v);
        break;
      case 'session.id':
      case 'apportion.session_id':
        into.session = str(v);
        break;
      case 'gen_ai.conversation.id':
        into.conversation = str(v);
        break;
      case 'user.id':
        into.user = str(v);
        break;
      case 'apportion.customer':
      case 'customer.id':
        into.customer = str(v);
        break;
      case 'apportion.team':
      case 'team.id':
        into.team = str(v);
        break;
      case 'apportion.task':
        into.task = str(v);
        break;
      case 'apportion.decision_id':
        into.decisionId = str(v);
        break;
      case 'apportion.attempt':
        into.attempt = int(v);
        break;
      case 'apportion.cost_usd':
      case 'gen_ai.usage.cost':
        into.costUsd = num(v);
        break;
    }
  }
}

const LLM_OPS = new Set(['chat', 'text_completion', 'generate_content', 'embeddings', 'completion', 'responses']);
const AGENT_OPS = new Set(['invoke_agent', 'create_agent']);

function kindOf(a: Attrs, hasUsage: boolean): SpanKind {
  const op = a.operation;
  if (op && LLM_OPS.has(op)) return 'llm';
  if (op && AGENT_OPS.has(op)) return 'agent';
  if (op === 'execute_tool') return 'tool';
  switch (a.oiKind?.toUpperCase()) {
    case 'LLM':
    case 'EMBEDDING':
      return 'llm';
    case 'AGENT':
      return 'agent';
    case 'TOOL':
      return 'tool';
  }
  return hasUsage || a.requestModel || a.responseModel ? 'llm' : 'other';
}

/**
 * OTLP JSON ids are hex; the protobuf JSON mapping's base64 is accepted too; protobuf ids are bytes. An id of only
 * zero bytes is returned as is: the OTLP spec calls it invalid (a zero parentSpanId means "no parent").
 */
function hexId(id: string | Uint8Array | undefined, bytes: number): string | undefined {
  if (id instanceof Uint8Array) {
    if (id.length !== bytes) return undefined;
    return (Buffer.isBuffer(id) ? id : Buffer.from(id.buffer, id.byteOffset, id.length)).toString('hex');
  }
  if (typeof id !== 'string' || id === '') return undefined;
  if (id.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(id)) return id.toLowerCase();
  const b = Buffer.from(id, 'base64');
  return b.length === bytes ? b.toString('hex') : undefined;
}

const isZeroId = (hex: string): boolean => /^0+$/.test(hex);

/**
 * Unix nanoseconds → ms: a Long (protobuf fixed64), a non-negative number, or a decimal string (OTLP JSON uint64).
 * Anything else (null, a boolean, an object or array in OTLP JSON, a negative Long) is undefined: the span is rejected.
 */
function nanosToMs(v: unknown): number | undefined {
  if (isLong(v)) {
    // Exact: high·2^32 + low = high·4294·10^6 + (high·967296 + low), every term below 2^53.
    if (!v.unsigned && v.high < 0) return undefined;
    const high = v.high >>> 0;
    return high * 4294 + Math.floor((high * 967_296 + (v.low >>> 0)) / 1e6);
  }
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v / 1e6) : undefined;
  if (typeof v !== 'string' || !/^\d{1,20}$/.test(v)) return undefined;
  return v.length <= 6 ? 0 : Number(v.slice(0, -6));
}

function statusOf(code: number | string | undefined): SpanStatus {
  if (code === 2 || code === 'STATUS_CODE_ERROR') return 'error';
  if (code === 1 || code === 'STATUS_CODE_OK') return 'ok';
  return 'unset';
}

const MAX_LABEL = 256;

/** At most `max` UTF-16 code units, never ending in the first half of a surrogate pair (a display name only). */
function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const code = s.charCodeAt(max - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * The attribution fields that name something (rollup keys, session ids): one that is too long rejects the span,
 * as on POST /v1/spans, since cutting it would merge distinct sessions or customers. The span name is only shown:
 * it is shortened instead.
 */
const ID_FIELDS = ['sessionId', 'customer', 'team', 'task', 'agent', 'provider', 'model'] as const;

function tooLong(fields: Record<(typeof ID_FIELDS)[number], string | undefined>): string | undefined {
  for (const f of ID_FIELDS) {
    const v = fields[f];
    if (v !== undefined && v.length > MAX_LABEL) return `${f} is ${v.length} characters (at most ${MAX_LABEL})`;
  }
  return undefined;
}

/**
 * What one span may carry, as on POST /v1/spans: each token count at most MAX_TOKENS, a provided cost at most
 * MAX_COST_USD. A larger one rejects the span (its trace would otherwise leave the range the rollups count exactly).
 */
export const MAX_TOKENS = 1_000_000_000;
export const MAX_COST_USD = 1_000_000;
const USAGE_FIELDS = ['input', 'output', 'cacheRead', 'cacheWrite', 'reasoning'] as const;

function outOfRange(usage: Span['usage'], costUsd: number | undefined): string | undefined {
  for (const f of USAGE_FIELDS) {
    const v = usage?.[f];
    if (v !== undefined && v > MAX_TOKENS) return `usage.${f} is ${v} tokens (at most ${MAX_TOKENS})`;
  }
  if (costUsd !== undefined && costUsd > MAX_COST_USD) return `costUsd is ${costUsd} (at most ${MAX_COST_USD})`;
  return undefined;
}

export function mapOtlp(body: { readonly resourceSpans?: readonly unknown[] }): OtlpMapped {
  const spans: Span[] = [];
  const rejected: OtlpMapped['rejected'] = [];
  // Validation checked the top level only: every field below is checked as it is read (optional chaining,
  // Array.isArray, hexId, the attribute readers), so the OTLP shapes here describe what is looked for, not what arrived.
  const all: readonly (ResourceSpans | null | undefined)[] = Array.isArray(body?.resourceSpans) ? (body.resourceSpans as readonly ResourceSpans[]) : [];
  for (const rs of all) {
    const res: Attrs = {};
    read(rs?.resource?.attributes, res);
    const scopes = rs?.scopeSpans ?? rs?.instrumentationLibrarySpans ?? [];
    for (const ss of Array.isArray(scopes) ? scopes : []) {
      for (const os of Array.isArray(ss?.spans) ? ss.spans : []) {
        const traceId = hexId(os?.traceId, 16);
        const spanId = hexId(os?.spanId, 8);
        if (!traceId || !spanId) {
          rejected.push({ reason: 'traceId/spanId must be 16/8 bytes, hex or base64' });
          continue;
        }
        if (isZeroId(traceId) || isZeroId(spanId)) {
          rejected.push({ reason: `span ${spanId}: ${isZeroId(traceId) ? 'traceId' : 'spanId'} is all zeros (an invalid id in OTLP)` });
          continue;
        }
        const start = nanosToMs(os.startTimeUnixNano);
        const end = nanosToMs(os.endTimeUnixNano);
        if (start === undefined || end === undefined) {
          const field = start === undefined ? 'startTimeUnixNano' : 'endTimeUnixNano';
          rejected.push({ traceId, spanId, reason: `span ${spanId}: ${field} is missing or not a uint64 (a decimal string or a non-negative integer)` });
          continue;
        }
        const startMs = parseTime(start);
        const endMs = parseTime(end);
        if (startMs === undefined || endMs === undefined || endMs < startMs) {
          rejected.push({ traceId, spanId, reason: `span ${spanId}: startTimeUnixNano/endTimeUnixNano missing, out of range or reversed` });
          continue;
        }
        const a: Attrs = {};
        read(os.attributes, a);
        const hasUsage = a.input !== undefined || a.output !== undefined;
        let usage: Span['usage'];
        if (hasUsage) {
          const cr = a.cacheRead ?? 0;
          const cw = a.cacheWrite ?? 0;
          let input = a.input ?? 0;
          // Semantic conventions count cached tokens inside input_tokens; instrumentations that follow
          // Anthropic's API report them apart (input < cache). Then input is the uncached part: add them.
          if (cr + cw > input) input += cr + cw;
          const output = a.output ?? 0;
          usage = { input, output, cacheRead: cr, cacheWrite: cw, reasoning: Math.min(a.reasoning ?? 0, output) };
        }
        const parentId = hexId(os.parentSpanId, 8);
        // An all-zero parent is how some SDKs spell "no parent": the span is a root, not an orphan waiting forever.
        const parent = parentId !== undefined && !isZeroId(parentId) ? parentId : undefined;
        const model = a.responseModel ?? a.requestModel ?? res.responseModel ?? res.requestModel;
        const provider = a.provider ?? res.provider;
        const session = a.session ?? a.conversation ?? res.session ?? res.conversation;
        const customer = a.customer ?? a.user ?? res.customer ?? res.user;
        const team = a.team ?? res.team;
        // A process that runs one agent may name it once, on its resource (OTEL_RESOURCE_ATTRIBUTES=gen_ai.agent.name=…).
        const agent = a.agent ?? res.agent;
        const task = a.task ?? res.task;
        const decisionId = a.decisionId ?? res.decisionId;
        const costUsd = a.costUsd;
        const range = outOfRange(usage, costUsd);
        if (range) {
          rejected.push({ traceId, spanId, reason: `span ${spanId}: ${range}` });
          continue;
        }
        const long = tooLong({ sessionId: session, customer, team, task, agent, provider, model });
        if (long) {
          rejected.push({ traceId, spanId, reason: `span ${spanId}: ${long}` });
          continue;
        }
        spans.push({
          traceId,
          spanId,
          kind: kindOf(a, hasUsage),
          status: statusOf(os.status?.code),
          start: startMs,
          end: endMs,
          ...(parent ? { parentSpanId: parent } : {}),
          ...(session !== undefined ? { sessionId: clean(session) } : {}),
          ...(agent !== undefined ? { agent: clean(agent) } : {}),
          ...(task !== undefined ? { task: clean(task) } : {}),
          ...(customer !== undefined ? { customer: clean(customer) } : {}),
          ...(team !== undefined ? { team: clean(team) } : {}),
          ...(provider !== undefined ? { provider: clean(provider) } : {}),
          ...(model !== undefined ? { model: clean(model) } : {}),
          ...(typeof os.name === 'string' && os.name !== '' ? { name: clean(truncate(os.name, MAX_LABEL)) } : {}),
          // Informative only (never summed): one out of POST /v1/spans's range is left out.
          ...(a.attempt !== undefined && a.attempt >= 1 && a.attempt <= 10_000 ? { attempt: a.attempt } : {}),
          ...(decisionId !== undefined && /^[A-Za-z0-9_-]{16,64}$/.test(decisionId) ? { decisionId } : {}),
          ...(usage ? { usage } : {}),
          ...(costUsd !== undefined ? { providedNano: usdToNano(costUsd) } : {}),
        });
      }
    }
  }
  return { spans, rejected };
}
