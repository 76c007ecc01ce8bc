import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MAX_PARAM_LENGTH } from '../http/errors.js';
import { namespaced, namespacePrefix } from '../http/namespace.js';
import { DECISION_ID_PATTERN } from '../kernel/decision.js';
import { clean, usdToNano, type Span, type SpanKind, type SpanStatus } from './span.js';
import { bareTraceSession } from './tree.js';

/**
 * The longest session id `GET /v1/sessions/:id/cost-tree` takes: its id is a path parameter, which the router
 * refuses past MAX_PARAM_LENGTH characters (after percent-decoding, counted in UTF-16 code units).
 */
export const MAX_STORED_SESSION_ID = MAX_PARAM_LENGTH;

const Count = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });
const SpanIdent = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,128}$', description: 'Letters, digits, _ . : - (max 128).' });
const Label = Type.String({ minLength: 1, maxLength: 256 });
const Time = Type.Union([Type.Integer({ minimum: 0, description: 'epoch milliseconds' }), Type.String({ maxLength: 40, description: 'ISO 8601' })]);

export const UsageInput = Type.Object(
  {
    input: Type.Intersect([Count], { description: 'All input tokens, including cache reads and writes.' }),
    output: Type.Intersect([Count], { description: 'All output tokens, including reasoning.' }),
    cacheRead: Type.Optional(Count),
    cacheWrite: Type.Optional(Count),
    reasoning: Type.Optional(Count),
  },
  { additionalProperties: false },
);

export const SpanInput = Type.Object(
  {
    traceId: SpanIdent,
    spanId: SpanIdent,
    parentSpanId: Type.Optional(Type.Union([SpanIdent, Type.Null()])),
    sessionId: Type.Optional(Label),
    agent: Type.String({ minLength: 1, maxLength: 128, description: 'Agent role that made the call.' }),
    task: Type.Optional(Label),
    customer: Type.Optional(Label),
    team: Type.Optional(Label),
    provider: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Required for a computed price.' })),
    kind: Type.Optional(Type.Union([Type.Literal('llm'), Type.Literal('agent'), Type.Literal('tool'), Type.Literal('other')])),
    name: Type.Optional(Label),
    usage: Type.Optional(UsageInput),
    costUsd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000, description: 'Cost the caller measured; kept apart from the computed one.' })),
    attempt: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    status: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('error'), Type.Literal('unset')])),
    start: Time,
    end: Time,
    decisionId: Type.Optional(Type.String({ pattern: DECISION_ID_PATTERN })),
    unbilledReason: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description:
          'Why the call billed nothing (e.g. `http 503`: the provider answered with an HTTP error status, no usage). Counted as a call of zero tokens and $0, not as an unmetered one. Its usage, if given, must be zero, and its costUsd 0.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type SpanInput = Static<typeof SpanInput>;

/** Spans are validated one by one (a bad span is rejected with its reason; the rest are kept). */
export const SpansBody = Type.Object(
  { spans: Type.Array(Type.Unknown(), { maxItems: 10_000, description: 'Canonical spans (see SpanInput).' }) },
  { additionalProperties: false },
);
export type SpansBody = Static<typeof SpansBody>;

export const Rejected = Type.Object({
  index: Type.Integer(),
  traceId: Type.Optional(Type.String()),
  spanId: Type.Optional(Type.String()),
  reason: Type.String(),
});
export type Rejected = Static<typeof Rejected>;

export const SpansResult = Type.Object({
  accepted: Type.Integer({ description: 'Spans newly stored.' }),
  duplicates: Type.Integer({ description: 'Spans already stored (same traceId and spanId); not counted again.' }),
  rejected: Type.Array(Rejected),
});
export type SpansResult = Static<typeof SpansResult>;

const checker = TypeCompiler.Compile(SpanInput);

/** Earliest and latest accepted span times (a span from 1970 or next year is a unit bug). */
const MIN_TIME = Date.UTC(2000, 0, 1);
const FUTURE_SLACK_MS = 86_400_000;

export function parseTime(v: number | string): number | undefined {
  const ms = typeof v === 'number' ? v : Date.parse(v);
  if (!Number.isFinite(ms) || ms < MIN_TIME || ms > Date.now() + FUTURE_SLACK_MS) return undefined;
  return ms;
}

export type Checked = { ok: true; span: Span } | { ok: false; reason: string };

/** Checks one canonical span and turns it into a Span; the reason names the field. */
export function checkSpan(raw: unknown, index: number): Checked {
  const at = `body/spans/${index}`;
  if (!checker.Check(raw)) {
    const e = checker.Errors(raw).First();
    return { ok: false, reason: e ? `${at}${e.path} ${e.message}` : `${at} is not a valid span` };
  }
  const s = raw;
  const start = parseTime(s.start);
  if (start === undefined) return { ok: false, reason: `${at}/start must be epoch ms or an ISO date between 2000 and tomorrow` };
  const end = parseTime(s.end);
  if (end === undefined) return { ok: false, reason: `${at}/end must be epoch ms or an ISO date between 2000 and tomorrow` };
  if (end < start) return { ok: false, reason: `${at}/end is before start` };
  const u = s.usage;
  if (u) {
    const cr = u.cacheRead ?? 0;
    const cw = u.cacheWrite ?? 0;
    if (cr + cw > u.input) return { ok: false, reason: `${at}/usage/cacheRead + cacheWrite (${cr + cw}) exceed input (${u.input}): input counts every input token, cached ones included` };
    if ((u.reasoning ?? 0) > u.output) return { ok: false, reason: `${at}/usage/reasoning exceeds output: output counts reasoning tokens` };
  }
  if (s.unbilledReason !== undefined) {
    if (u && (u.input > 0 || u.output > 0)) return { ok: false, reason: `${at}/usage must be zero (or absent) with unbilledReason: a call that billed nothing used no tokens` };
    if (s.costUsd !== undefined && s.costUsd > 0) return { ok: false, reason: `${at}/costUsd must be 0 (or absent) with unbilledReason: a call that billed nothing cost nothing` };
  }
  // A call that billed nothing carries zero usage, so it is counted (a call of $0) and never unmetered.
  const usage = u ?? (s.unbilledReason !== undefined ? { input: 0, output: 0 } : undefined);
  const kind: SpanKind = s.kind ?? (usage || s.model ? 'llm' : 'agent');
  const status: SpanStatus = s.status ?? 'ok';
  const span: Span = {
    traceId: s.traceId,
    spanId: s.spanId,
    kind,
    status,
    start,
    end,
    agent: clean(s.agent),
    ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
    ...(s.sessionId !== undefined ? { sessionId: clean(s.sessionId) } : {}),
    ...(s.task !== undefined ? { task: clean(s.task) } : {}),
    ...(s.customer !== undefined ? { customer: clean(s.customer) } : {}),
    ...(s.team !== undefined ? { team: clean(s.team) } : {}),
    ...(s.provider !== undefined ? { provider: clean(s.provider) } : {}),
    ...(s.model !== undefined ? { model: clean(s.model) } : {}),
    ...(s.name !== undefined ? { name: clean(s.name) } : {}),
    ...(s.attempt !== undefined ? { attempt: s.attempt } : {}),
    ...(s.decisionId !== undefined ? { decisionId: s.decisionId } : {}),
    ...(usage ? { usage: { input: usage.input, output: usage.output, cacheRead: usage.cacheRead ?? 0, cacheWrite: usage.cacheWrite ?? 0, reasoning: usage.reasoning ?? 0 } } : {}),
    ...(s.costUsd !== undefined ? { providedNano: usdToNano(s.costUsd) } : {}),
    ...(s.unbilledReason !== undefined ? { unbilledReason: clean(s.unbilledReason) } : {}),
  };
  return { ok: true, span };
}

/**
 * Whether every session this span can land in opens in the cost-tree route, for the key that sent it and for an
 * operator key, which names a tenant's session by its stored id `<tenant>~<id>`: the stored form must fit in
 * MAX_STORED_SESSION_ID characters. That holds the `sessionId`, and the `traceId` too, as a trace whose spans name
 * no session is listed as session `trace-<traceId>` (whether one of its spans will name a session is not known
 * when a span arrives, so the trace id is held to it either way). `tenant`: the caller's tenant, null for an
 * operator. Answers the field and why, or undefined when both fit.
 */
export function storedIdProblem(span: Pick<Span, 'traceId' | 'sessionId'>, tenant: string | null): { field: 'sessionId' | 'traceId'; reason: string } | undefined {
  const ns = namespacePrefix(tenant);
  const within = ns ? ` with the tenant prefix "${ns}"` : '';
  if (span.sessionId !== undefined) {
    const stored = namespaced(tenant, span.sessionId);
    if (stored.length > MAX_STORED_SESSION_ID) {
      return {
        field: 'sessionId',
        reason: `is ${span.sessionId.length} characters: a session id must fit in ${MAX_STORED_SESSION_ID} characters${within} (here at most ${MAX_STORED_SESSION_ID - ns.length}), the longest id GET /v1/sessions/:id/cost-tree takes`,
      };
    }
  }
  const traceSession = bareTraceSession(namespaced(tenant, span.traceId));
  if (traceSession.length > MAX_STORED_SESSION_ID) {
    const most = MAX_STORED_SESSION_ID - (traceSession.length - span.traceId.length);
    return {
      field: 'traceId',
      reason: `is ${span.traceId.length} characters: a trace whose spans name no session is listed as session "trace-<traceId>", which must fit in ${MAX_STORED_SESSION_ID} characters${within} (${most > 0 ? `here a trace id of at most ${most}` : 'this tenant name leaves no room for one'}), the longest id GET /v1/sessions/:id/cost-tree takes`,
    };
  }
  return undefined;
}

// --- price overrides ---------------------------------------------------------------------------
const PerMTok = Type.Number({ minimum: 0, maximum: 100_000, description: 'USD per million tokens.' });

export const PriceOverrideBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    models: Type.Array(
      Type.Object(
        {
          model: Type.String({ minLength: 1, maxLength: 256 }),
          provider: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
          inputMTok: PerMTok,
          outputMTok: PerMTok,
          cacheReadMTok: Type.Optional(PerMTok),
          cacheWriteMTok: Type.Optional(PerMTok),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);
export type PriceOverrideBody = Static<typeof PriceOverrideBody>;

export const TenantParams = Type.Object({
  tenant: Type.String({ pattern: '^(\\*|[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255})$', description: 'A customer id, or * for every tenant without its own.' }),
});
