import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { MAX_PARAM_LENGTH } from '../http/errors.js';
import { tenantOfCaller } from '../http/tenancy.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import { jsonDecoder } from '../redis/decode.js';
import { decisionUses, roleEnvelope, type RoleEnvelope, type RoleUse } from './envelopes.js';
import { ID_PATTERN } from '../pipelines/schema.js';
import { SpanStore } from './ingest.js';
import { isRedisUnavailable } from '../redis/unavailable.js';
import { costKeys } from './keys.js';
import { namespaced } from '../http/namespace.js';
import { zeroTotals } from './tree.js';
import { totalsView } from './views.js';
import { mapOtlp } from './otlp.js';
import { otlpContentTypes } from './otlp-proto.js';
import { Pricer } from './pricing.js';
import { costReport, reportCsv, type CostReport } from './reports.js';
import { DIMENSIONS } from './rollup-vector.js';
import { checkSpan, PriceOverrideBody, SpansBody, SpansResult, storedIdProblem, TenantParams, type Rejected } from './schema.js';
import { CostReportResponse, EnvelopesResponse, SessionCostsResponse } from './responses.js';
import { sessionCosts } from './session.js';
import { listSessions, type SessionList } from './session-list.js';
import type { Span } from './span.js';

/**
 * A decision's per-agent budgets as stored beside its traces (agent → tokens, and the served models under `@models`
 * on a pipeline with model tiers: costs/ingest.ts); another shape reads as none.
 */
const decodeBudgets = jsonDecoder(Type.Record(Type.String(), Type.Union([Type.Number(), Type.Record(Type.String(), Type.String())])));

// The longest stored session id (MAX_PARAM_LENGTH, http/errors.ts): a tenant's `<tenant>~<sessionId>` for the operator.
const SessionParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: MAX_PARAM_LENGTH }) });
const ReportQuery = Type.Object(
  {
    groupBy: Type.Union(DIMENSIONS.map((d) => Type.Literal(d))),
    from: Type.Optional(Type.String({ description: 'First day, YYYY-MM-DD (UTC). Default: 29 days before `to`.' })),
    to: Type.Optional(Type.String({ description: 'Last day, YYYY-MM-DD (UTC). Default: today.' })),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])),
  },
  { additionalProperties: false },
);
const EnvelopeQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: 'Sessions sampled (newest first). Default 500.' })),
    includeFailed: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
  },
  { additionalProperties: false },
);
const PipelineIdParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });
const OtlpBody = Type.Object({ resourceSpans: Type.Optional(Type.Array(Type.Unknown())) }, { description: 'OTLP ExportTraceServiceRequest (JSON, or application/x-protobuf).' });
/** Fully accepted: `{}` (the spec forbids an empty partialSuccess; exporters warn on any partialSuccess). */
const OtlpResponse = Type.Object({
  partialSuccess: Type.Optional(Type.Object({ rejectedSpans: Type.Integer(), errorMessage: Type.String() })),
});
const Loose = Type.Object({}, { additionalProperties: true });

/**
 * A tenant key's spans are stored under its own trace and session namespace (`<tenant>~<id>`: tenant names
 * cannot contain `~`, so no tenant can write into another's trace) and billed to it (customer = tenant), whatever
 * the body says. Operator keys write ids and customers as given.
 */
function tenantSpans(req: FastifyRequest, list: Span[]): Span[] {
  const t = tenantOfCaller(req);
  if (t === null) return list;
  return list.map((s) => ({ ...s, traceId: namespaced(t, s.traceId), ...(s.sessionId !== undefined ? { sessionId: namespaced(t, s.sessionId) } : {}), customer: t }));
}

const tenantNamespaced = (req: FastifyRequest, id: string): string => namespaced(tenantOfCaller(req), id);

/** How often each API process looks for traces to repair (SpanStore.repair). */
const REPAIR_EVERY_MS = 15_000;

/** A tenant key's showback: its own customer row only. */
function tenantReport(req: FastifyRequest, report: CostReport): CostReport {
  const t = tenantOfCaller(req);
  if (t === null) return report;
  const row = report.rows.find((r) => r.key === t);
  // Without a row of its own every figure of the total is zero, the nested token counts included.
  const { key: _key, ...own } = row ?? { key: t, ...totalsView(zeroTotals()) };
  return { ...report, rows: row ? [row] : [], total: own };
}

export interface CostsModule extends ModuleParts {
  readonly spans: SpanStore;
  /**
   * Session ids with cost traces, newest first (the session indexes, see listSessions); `tenant`: only that
   * tenant's sessions. What the console lists.
   */
  sessions(limit: number, tenant?: string): Promise<SessionList>;
}

/** What the costs module is given (src/modules.ts). */
export type CostsDeps = Services<'redis' | 'keys' | 'view' | 'store' | 'snapshot' | 'metrics' | 'log', 'spanRetentionDays' | 'maxSpansPerTrace'>;

/** Cost attribution: span and OTLP ingest, prices, cost trees, rollups and showback, envelopes. */
export function costsModule(core: CostsDeps): CostsModule {
  const ck = costKeys(core.keys);
  const retentionSeconds = core.config.spanRetentionDays * 86_400;
  const spans = new SpanStore({
    redis: core.redis,
    keys: core.keys,
    costKeys: ck,
    pricer: new Pricer(),
    view: core.view,
    retentionSeconds,
    maxSpansPerTrace: core.config.maxSpansPerTrace,
    log: core.log,
    count: (stored, duplicates) => {
      core.metrics.spans.inc({ result: 'stored' }, stored);
      core.metrics.spans.inc({ result: 'duplicate' }, duplicates);
    },
  });

  // Only a store that cannot answer is a 503 (retry); any other error (a script's) is a bug, answered INTERNAL.
  const store = async (list: Span[], req: FastifyRequest) => {
    try {
      return await spans.ingest(tenantSpans(req, list));
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      core.log.warn({ err: e }, 'span store unreachable');
      throw new AppError('REDIS_UNAVAILABLE', 'span store unreachable');
    }
  };

  // Finishes the traces of requests that failed after storing spans (see SpanStore.repair), in every API process.
  let repairTimer: NodeJS.Timeout | undefined;
  let repairing: Promise<unknown> = Promise.resolve();
  const startRepair = () => {
    repairTimer = setInterval(() => {
      repairing = spans.repair().catch((err: unknown) => core.log.warn({ err }, 'span repair failed; retried on the next pass'));
    }, REPAIR_EVERY_MS);
    repairTimer.unref();
  };

  return {
    name: 'costs',
    spans,
    sessions: (limit, tenant) => listSessions(core.redis, ck, retentionSeconds, limit, tenant),
    async close() {
      clearInterval(repairTimer);
      await repairing;
    },
    routes(app: ApiApp) {
      startRepair();
      otlpContentTypes(app);
      app.post(
        '/v1/spans',
        {
          config: { access: 'client' },
          schema: {
            tags: ['costs'],
            summary: 'Ingest canonical spans (idempotent on traceId + spanId; bad spans rejected one by one)',
            body: SpansBody,
            response: { 200: SpansResult, ...errorResponses },
          },
        },
        async (req) => {
          const body = req.body;
          const good: Span[] = [];
          const goodIndex: number[] = [];
          const rejected: Rejected[] = [];
          const tenant = tenantOfCaller(req);
          body.spans.forEach((raw, i) => {
            const c = checkSpan(raw, i);
            const tooLong = c.ok ? storedIdProblem(c.span, tenant) : undefined;
            if (c.ok && tooLong) rejected.push({ index: i, traceId: c.span.traceId, spanId: c.span.spanId, reason: `body/spans/${i}/${tooLong.field} ${tooLong.reason}` });
            else if (c.ok) {
              good.push(c.span);
              goodIndex.push(i);
            } else {
              const r = raw as { traceId?: unknown; spanId?: unknown } | null;
              rejected.push({
                index: i,
                ...(typeof r?.traceId === 'string' ? { traceId: r.traceId } : {}),
                ...(typeof r?.spanId === 'string' ? { spanId: r.spanId } : {}),
                reason: c.reason,
              });
            }
          });
          const res = await store(good, req);
          for (const f of res.refused) {
            const s = good[f.index]!;
            rejected.push({ index: goodIndex[f.index]!, traceId: s.traceId, spanId: s.spanId, reason: f.reason });
          }
          rejected.sort((a, b) => a.index - b.index);
          core.metrics.spans.inc({ result: 'rejected' }, rejected.length);
          return { accepted: res.accepted, duplicates: res.duplicates, rejected };
        },
      );

      app.post(
        '/v1/traces',
        {
          config: { access: 'client' },
          schema: {
            tags: ['costs'],
            summary: 'OTLP/HTTP trace export, JSON or protobuf (GenAI semantic conventions); gzip accepted',
            body: OtlpBody,
            response: { 200: OtlpResponse, ...errorResponses },
          },
        },
        async (req) => {
          const mapped = mapOtlp(req.body);
          // The request holds its parsed body until it is answered, across the store's Redis round trips: let the
          // decoded tree (for protobuf, id slices pinning the whole body buffer) go now, so minor GCs do not copy
          // every request's tree while the spans are stored.
          req.body = {};
          const tenant = tenantOfCaller(req);
          const tooLong: string[] = [];
          const fit = mapped.spans.filter((s) => {
            const p = storedIdProblem(s, tenant);
            if (p) tooLong.push(`span ${s.spanId}: ${p.field === 'sessionId' ? 'the session id' : 'the trace id'} ${p.reason}`);
            return !p;
          });
          const res = await store(fit, req);
          const reasons = [...mapped.rejected.map((r) => r.reason), ...tooLong, ...res.refused.map((r) => r.reason)];
          core.metrics.spans.inc({ result: 'rejected' }, reasons.length);
          const distinct = [...new Set(reasons)];
          if (reasons.length === 0) return {};
          return {
            partialSuccess: {
              rejectedSpans: reasons.length,
              errorMessage: `${reasons.length} span(s) rejected: ${distinct.slice(0, 5).join('; ')}`,
            },
          };
        },
      );

      app.get(
        '/v1/sessions/:id/cost-tree',
        {
          schema: {
            tags: ['costs'],
            summary: 'A session’s cost tree: self and subtree cost per span, claims, breakdowns, retries, coordinator overhead',
            params: SessionParams,
            response: { 200: SessionCostsResponse, ...errorResponses },
          },
        },
        async (req) => {
          const { id: asked } = req.params;
          const id = tenantNamespaced(req, asked);
          const traceIds = await core.redis.smembers(ck.sessionTraces(id));
          const traces = await spans.readTraces(traceIds.sort());
          const view = sessionCosts(id, traces);
          if (view.nodes.length === 0) throw new AppError('SESSION_NOT_FOUND', `params/id: no spans stored for session "${asked}"`);
          return view;
        },
      );

      app.get(
        '/v1/reports/costs',
        {
          schema: {
            tags: ['costs'],
            summary: 'Showback: cost and tokens grouped by customer, team, agent, model or day',
            querystring: ReportQuery,
            response: { 200: Type.Union([CostReportResponse, Type.String({ description: 'CSV when format=csv' })]), ...errorResponses },
          },
        },
        async (req, reply) => {
          const q = req.query;
          if (tenantOfCaller(req) !== null && q.groupBy !== 'customer') {
            throw new AppError('FORBIDDEN', 'querystring/groupBy: a tenant key reads its own showback only (groupBy=customer); other groupings span tenants');
          }
          const report = tenantReport(req, await costReport(core.redis, ck, q.groupBy, q.from, q.to));
          if (q.format === 'csv') return reply.type('text/csv; charset=utf-8').send(reportCsv(report));
          return report;
        },
      );

      app.get(
        '/v1/pipelines/:id/envelopes',
        {
          schema: {
            tags: ['costs'],
            summary: 'Per-role budget envelopes from traces: P50/P95/P99 tokens and cost, 1.5 × P95, flags',
            params: PipelineIdParams,
            querystring: EnvelopeQuery,
            response: { 200: EnvelopesResponse, ...errorResponses },
          },
        },
        async (req) => {
          const { id } = req.params;
          const q = req.query;
          const pipeline = core.view().pipelines.get(id);
          if (!pipeline) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
          const limit = Math.min(Math.max(Number(q.limit ?? 500), 1), 10_000);
          const includeFailed = q.includeFailed === 'true';
          return envelopes(id, pipeline.agents, limit, includeFailed);
        },
      );

      app.put(
        '/v1/price-overrides/:tenant',
        {
          config: { access: 'operator' },
          schema: {
            tags: ['costs'],
            summary: 'Set a tenant’s negotiated prices (USD per million tokens); `*` applies to tenants without their own',
            params: TenantParams,
            body: PriceOverrideBody,
            response: { 200: Loose, ...errorResponses },
          },
        },
        async (req) => {
          const { tenant } = req.params;
          const body = req.body;
          const version = await core.store.put('priceOverrides', tenant, body);
          await core.snapshot.refresh();
          return { tenant, version, ...body };
        },
      );
      app.get(
        '/v1/price-overrides/:tenant',
        { config: { access: 'operator' }, schema: { tags: ['costs'], summary: 'A tenant’s price override', params: TenantParams, response: { 200: Loose, ...errorResponses } } },
        async (req) => {
          const { tenant } = req.params;
          const v = core.view().raw.kinds.priceOverrides.get(tenant);
          if (!v) throw new AppError('PRICE_OVERRIDE_NOT_FOUND', `params/tenant: no price override for "${tenant}"`);
          return { tenant, version: v.version, ...(v.doc as object) };
        },
      );
      app.delete(
        '/v1/price-overrides/:tenant',
        { config: { access: 'operator' }, schema: { tags: ['costs'], summary: 'Remove a tenant’s price override', params: TenantParams, response: { 200: Loose, ...errorResponses } } },
        async (req) => {
          const { tenant } = req.params;
          const n = await core.store.delete([{ kind: 'priceOverrides', id: tenant }]);
          if (n === 0) throw new AppError('PRICE_OVERRIDE_NOT_FOUND', `params/tenant: no price override for "${tenant}"`);
          await core.snapshot.refresh();
          return { tenant, deleted: true };
        },
      );
    },
  };

  async function envelopes(pipelineId: string, agents: readonly { name: string; maxTokens?: number | undefined }[], limit: number, includeFailed: boolean) {
    // Newest first; a decision may span several traces, so read more members than sessions wanted.
    const members = await core.redis.zrevrange(ck.pipelineTraces(pipelineId), 0, limit * 4 - 1);
    const tracesOf = new Map<string, string[]>();
    for (const m of members) {
      const cut = m.indexOf('/');
      const d = m.slice(0, cut);
      if (!tracesOf.has(d) && tracesOf.size >= limit) continue;
      let l = tracesOf.get(d);
      if (!l) tracesOf.set(d, (l = []));
      l.push(m.slice(cut + 1));
    }
    const decisionIds = [...tracesOf.keys()];
    const allTraces = [...new Set([...tracesOf.values()].flat())];
    const [resolved, budgets] = await Promise.all([
      spans.readTraces(allTraces),
      decisionIds.length ? core.redis.mget(decisionIds.map((d) => ck.pipelineBudget(pipelineId, d))) : Promise.resolve([] as (string | null)[]),
    ]);
    const byId = new Map(resolved.map((t) => [t.traceId, t]));
    const uses = new Map<string, RoleUse[]>();
    let sessions = 0;
    let skippedFailed = 0;
    decisionIds.forEach((d, i) => {
      const traces = tracesOf.get(d)!.flatMap((t) => (byId.has(t) ? [byId.get(t)!] : []));
      const u = decisionUses(d, traces);
      if (u.failed && !includeFailed) {
        skippedFailed++;
        return;
      }
      sessions++;
      const b = budgets[i] ? decodeBudgets(budgets[i]!) : undefined;
      const servedField = b?.['@models'];
      const served = typeof servedField === 'object' ? servedField : undefined;
      for (const [agent, x] of u.byAgent) {
        let l = uses.get(agent);
        if (!l) uses.set(agent, (l = []));
        const budget = b?.[agent];
        const model = served?.[agent];
        l.push({ tokens: x.tokens, costNano: x.costNano, ...(typeof budget === 'number' ? { budget } : {}), ...(typeof model === 'string' ? { model } : {}) });
      }
    });
    const known = new Map(agents.map((a) => [a.name, a]));
    const roles: RoleEnvelope[] = [];
    for (const a of agents) roles.push(roleEnvelope(a.name, uses.get(a.name) ?? [], a.maxTokens, true));
    for (const [agent, l] of uses) if (!known.has(agent)) roles.push(roleEnvelope(agent, l, undefined, false));
    return { pipeline: pipelineId, sessions, skippedFailed, sample: { limit, includeFailed }, roles };
  }
}
