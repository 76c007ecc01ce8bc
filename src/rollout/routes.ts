import { createHash } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyRequest } from 'fastify';
import type { ControlView } from '../control/view.js';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { seesPipeline } from '../http/tenancy.js';
import { Id } from '../pipelines/schema.js';
import { AcknowledgeBody, ExperimentBody, ExperimentParams, ExperimentResponse, PromoteBody, ReasonBody } from './schema.js';
import type { ExperimentService, Transition } from './service.js';

const conflict = { 409: errorResponses[404] };
const Any = Type.Record(Type.String(), Type.Unknown());
const ListQuery = Type.Object({ pipeline: Type.Optional(Id) }, { additionalProperties: false });
const ResultsQuery = Type.Object(
  { winsorize: Type.Optional(Type.String({ pattern: '^0?\\.[0-9]+$', description: 'Cap cost at this quantile, e.g. 0.99.' })) },
  { additionalProperties: false },
);
const AuditQuery = Type.Object(
  { limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'Entries to return, newest first: 1 to 9999. Default 100.' })) },
  { additionalProperties: false },
);

/** Who made a change, for the audit trail: a fingerprint of the bearer key (never the key itself). */
export function actorOf(req: FastifyRequest): string {
  // A stored key or a browser session: the key id (not secret) names the actor.
  const p = req.principal;
  if (p?.keyId && (p.via === 'cookie' || !p.keyId.startsWith('env:'))) return `key:${p.keyId}`;
  const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return 'anonymous';
  return `key:${createHash('sha256').update(m[1]!.trim()).digest('hex').slice(0, 12)}`;
}

export function experimentRoutes(app: ApiApp, svc: ExperimentService, view: () => ControlView): void {
  const tags = ['experiments'];
  app.put(
    '/v1/experiments/:id',
    {
      schema: {
        tags,
        summary: 'Create or replace an experiment (a started one keeps its state; changed weights start a new phase)',
        params: ExperimentParams,
        body: ExperimentBody,
        response: { 200: ExperimentResponse, ...errorResponses, ...conflict },
      },
    },
    async (req) => svc.put(req.params.id, req.body, actorOf(req)),
  );

  app.get(
    '/v1/experiments/:id',
    { schema: { tags, summary: 'Get an experiment and its state', params: ExperimentParams, response: { 200: ExperimentResponse, ...errorResponses } } },
    async (req) => svc.get(req.params.id),
  );

  app.get(
    '/v1/experiments',
    { schema: { tags, summary: 'List experiments', querystring: ListQuery, response: { 200: Type.Object({ items: Type.Array(ExperimentResponse) }) } } },
    async (req) => ({ items: svc.list(req.query.pipeline).filter((e) => seesPipeline(req, view(), String(e.pipeline))) }),
  );

  app.delete(
    '/v1/experiments/:id',
    { schema: { tags, summary: 'Delete a draft or ended experiment', params: ExperimentParams, response: { 204: Type.Null(), ...errorResponses, ...conflict } } },
    async (req, reply) => {
      await svc.delete(req.params.id, actorOf(req));
      return reply.status(204).send();
    },
  );

  for (const t of ['start', 'pause', 'resume', 'stop'] as const satisfies readonly Transition[]) {
    app.post(
      `/v1/experiments/:id/${t}`,
      {
        schema: {
          tags,
          summary: `${t[0]!.toUpperCase()}${t.slice(1)} the experiment`,
          params: ExperimentParams,
          response: { 200: ExperimentResponse, ...errorResponses, ...conflict },
        },
      },
      async (req) => svc.transition(req.params.id, t, actorOf(req), reasonOf(req.body)),
    );
  }

  app.post(
    '/v1/experiments/:id/rollback',
    {
      schema: {
        tags,
        summary: 'Kill switch: every unit of the experiment goes to control at once (body: { reason? })',
        params: ExperimentParams,
        response: { 200: ExperimentResponse, ...errorResponses, ...conflict },
      },
    },
    async (req) => svc.rollback(req.params.id, actorOf(req), reasonOf(req.body) ?? 'manual rollback'),
  );

  app.post(
    '/v1/experiments/:id/promote',
    {
      schema: {
        tags,
        summary: "Make a variant's strategy the pipeline default and end the experiment (also after a rollback; after a guardrail's, with force)",
        params: ExperimentParams,
        body: PromoteBody,
        response: { 200: ExperimentResponse, ...errorResponses, ...conflict },
      },
    },
    async (req) => {
      const b = req.body;
      return svc.promote(req.params.id, b.variant, actorOf(req), b.force ?? false);
    },
  );

  app.post(
    '/v1/experiments/:id/srm/acknowledge',
    {
      schema: {
        tags,
        summary: "Acknowledge the current phase's sample-ratio-mismatch flag with a reason (audited): the ramp resumes and the SRM test restarts",
        params: ExperimentParams,
        body: AcknowledgeBody,
        response: { 200: ExperimentResponse, ...errorResponses, ...conflict },
      },
    },
    async (req) => svc.acknowledgeSrm(req.params.id, actorOf(req), req.body.reason),
  );

  app.get(
    '/v1/experiments/:id/results',
    {
      schema: {
        tags,
        summary: 'Per variant and phase: n, quality, cost, quality per dollar, per-agent metrics; differences vs control (Welch, sequential, Holm), SRM',
        params: ExperimentParams,
        querystring: ResultsQuery,
        response: { 200: Any, ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query.winsorize;
      const w = q === undefined ? undefined : Number(q);
      if (w !== undefined && !(w > 0.5 && w < 1)) throw new AppError('VALIDATION_FAILED', `querystring/winsorize: must be a quantile in (0.5, 1), got ${q}`);
      return svc.results(req.params.id, w !== undefined ? { winsorize: w } : {});
    },
  );

  app.get(
    '/v1/experiments/:id/audit',
    {
      schema: {
        tags,
        summary: 'Audit trail: every change (what, when, which key), newest first',
        params: ExperimentParams,
        querystring: AuditQuery,
        response: { 200: Type.Object({ items: Type.Array(Any) }), ...errorResponses },
      },
    },
    async (req) => {
      const l = req.query.limit;
      return { items: await svc.audit(req.params.id, l !== undefined ? Number(l) : 100) };
    },
  );

  app.post(
    '/v1/experiments/:id/evaluate',
    {
      schema: {
        tags,
        summary: 'Run one guardrail/SRM/ramp evaluation now (the rollout job does this every APPORTION_ROLLOUT_INTERVAL_MS)',
        params: ExperimentParams,
        response: { 200: Any, ...errorResponses },
      },
    },
    async (req) => svc.evaluate(req.params.id),
  );
}

/**
 * Lifecycle routes take an optional JSON body `ReasonBody` ({ reason? }). It is checked here rather than
 * by a route body schema, which would reject a request without a body.
 */
function reasonOf(body: unknown): string | undefined {
  if (body === undefined || body === null) return undefined;
  const err = Value.Errors(ReasonBody, body).First();
  if (err) throw new AppError('VALIDATION_FAILED', `body${err.path}: ${err.message}`);
  return (body as { reason?: string }).reason;
}
