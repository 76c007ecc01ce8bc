/**
 * The canonical span, after validation and mapping (from POST /v1/spans or OTLP), and its compact storage line.
 * Money is integer nano-USD (1 USD = 1e9); a float never reaches Redis.
 */

export type SpanKind = 'llm' | 'agent' | 'tool' | 'other';
export type SpanStatus = 'ok' | 'error' | 'unset';

export interface Usage {
  /** All input tokens, INCLUDING cache reads and cache writes (OpenTelemetry and genai-prices semantics). */
  readonly input: number;
  readonly output: number;
  readonly cacheRead: number;
  readonly cacheWrite: number;
  /** Reasoning tokens, already included in `output`; informative only. */
  readonly reasoning: number;
}

export interface Span {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly sessionId?: string;
  readonly agent?: string;
  readonly task?: string;
  readonly customer?: string;
  readonly team?: string;
  readonly provider?: string;
  readonly model?: string;
  readonly kind: SpanKind;
  readonly name?: string;
  readonly status: SpanStatus;
  readonly attempt?: number;
  /** Epoch ms. */
  readonly start: number;
  readonly end: number;
  readonly decisionId?: string;
  /** Absent when the call reported no usage (e.g. a stream without a final usage chunk). */
  readonly usage?: Usage;
  /** Cost the caller provided (nano-USD); kept apart from the computed one. */
  readonly providedNano?: number;
  /**
   * Why the call billed nothing (e.g. `http 503`: the provider answered with an error status): its usage is zero
   * and it costs $0 whatever its model's price, a known cost rather than an unmetered call.
   */
  readonly unbilledReason?: string;
}

const SEP = '\x1f';
const KINDS: readonly SpanKind[] = ['llm', 'agent', 'tool', 'other'];
const STATUSES: readonly SpanStatus[] = ['ok', 'error', 'unset'];

/** Control characters (the line separator among them) are replaced in every stored string. */
export function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f]/g, ' ');
}

const opt = (s: string | undefined) => (s === undefined ? '' : s);
const back = (s: string | undefined) => (s === undefined || s === '' ? undefined : s);

/** Encodes one span as a separator-joined line (no JSON: a trace is re-read on every ingest that touches it). */
export function encodeSpan(s: Span): string {
  const u = s.usage;
  return [
    s.spanId,
    opt(s.parentSpanId),
    opt(s.sessionId),
    opt(s.agent),
    opt(s.task),
    opt(s.customer),
    opt(s.team),
    opt(s.provider),
    opt(s.model),
    String(KINDS.indexOf(s.kind)),
    opt(s.name),
    String(STATUSES.indexOf(s.status)),
    s.attempt === undefined ? '' : String(s.attempt),
    String(s.start),
    String(s.end),
    opt(s.decisionId),
    u ? `${u.input},${u.output},${u.cacheRead},${u.cacheWrite},${u.reasoning}` : '',
    s.providedNano === undefined ? '' : String(s.providedNano),
    opt(s.unbilledReason),
  ].join(SEP);
}

export function decodeSpan(traceId: string, line: string): Span {
  const f = line.split(SEP);
  const u = f[16] ? f[16].split(',').map(Number) : undefined;
  const attempt = back(f[12]);
  const provided = back(f[17]);
  const s: Span = {
    traceId,
    spanId: f[0]!,
    kind: KINDS[Number(f[9])] ?? 'other',
    status: STATUSES[Number(f[11])] ?? 'unset',
    start: Number(f[13]),
    end: Number(f[14]),
    ...(back(f[1]) !== undefined ? { parentSpanId: f[1] } : {}),
    ...(back(f[2]) !== undefined ? { sessionId: f[2] } : {}),
    ...(back(f[3]) !== undefined ? { agent: f[3] } : {}),
    ...(back(f[4]) !== undefined ? { task: f[4] } : {}),
    ...(back(f[5]) !== undefined ? { customer: f[5] } : {}),
    ...(back(f[6]) !== undefined ? { team: f[6] } : {}),
    ...(back(f[7]) !== undefined ? { provider: f[7] } : {}),
    ...(back(f[8]) !== undefined ? { model: f[8] } : {}),
    ...(back(f[10]) !== undefined ? { name: f[10] } : {}),
    ...(attempt !== undefined ? { attempt: Number(attempt) } : {}),
    ...(back(f[15]) !== undefined ? { decisionId: f[15] } : {}),
    ...(u ? { usage: { input: u[0]!, output: u[1]!, cacheRead: u[2]!, cacheWrite: u[3]!, reasoning: u[4]! } } : {}),
    ...(provided !== undefined ? { providedNano: Number(provided) } : {}),
    ...(back(f[18]) !== undefined ? { unbilledReason: f[18] } : {}),
  };
  return s;
}

export const NANO_PER_USD = 1_000_000_000;

export function usdToNano(usd: number): number {
  return Math.round(usd * NANO_PER_USD);
}

export function nanoToUsd(nano: number): number {
  return nano / NANO_PER_USD;
}
