import type { FastifyRequest } from 'fastify';
import { parseScope } from '../budgets/scope.js';
import type { ControlView } from '../control/view.js';
import { AppError } from '../errors/app-error.js';
import { idTaken, pipelineTenants, sees, seesPipeline, tenantOfCaller } from '../http/tenancy.js';
import { splitNamespace } from '../http/namespace.js';

/**
 * The tenant rule of every route (see src/http/tenancy.ts for the ownership model, docs/tenants.md): run as a
 * preHandler for callers confined to a tenant, before the route's own code.
 */

type Guard = (req: FastifyRequest, view: ControlView) => void;

const isRecord = (v: unknown): v is Readonly<Record<string, unknown>> => typeof v === 'object' && v !== null;
/** A request part (params, body, querystring) as a record: the guard runs before the route has validated it. */
const fields = (part: unknown): Readonly<Record<string, unknown>> => (isRecord(part) ? part : {});
const body = (req: FastifyRequest) => fields(req.body);
const query = (req: FastifyRequest) => fields(req.query);
/** A path parameter of the route (always a string when the route declares it). */
const param = (req: FastifyRequest, name: string): string | undefined => {
  const v = fields(req.params)[name];
  return typeof v === 'string' ? v : undefined;
};

function pipelineOf(view: ControlView, kind: 'strategies' | 'experiments', id: string): string | undefined {
  if (kind === 'strategies') return view.strategies.get(id)?.pipeline;
  const doc = view.raw.kinds.experiments.get(id)?.doc as { pipeline?: unknown } | undefined;
  return typeof doc?.pipeline === 'string' ? doc.pipeline : undefined;
}

/** An existing pipeline of another tenant answers as a missing one; a missing one is left to the route. */
const pipelineParam =
  (name: string, field = `params/${name}`): Guard =>
  (req, view) => {
    const id = param(req, name);
    if (id === undefined) return;
    const owner = pipelineTenants(view).get(id);
    if (owner !== undefined && !sees(req, owner)) throw new AppError('PIPELINE_NOT_FOUND', `${field}: no pipeline "${id}"`);
  };

const pipelineField =
  (get: (req: FastifyRequest) => unknown, field: string): Guard =>
  (req, view) => {
    const id = get(req);
    if (typeof id !== 'string') return;
    const owner = pipelineTenants(view).get(id);
    if (owner !== undefined && !sees(req, owner)) throw new AppError('PIPELINE_NOT_FOUND', `${field}: no pipeline "${id}"`);
  };

const strategyField =
  (get: (req: FastifyRequest) => unknown, field: string): Guard =>
  (req, view) => {
    const id = get(req);
    if (typeof id !== 'string') return;
    const p = pipelineOf(view, 'strategies', id);
    if (p !== undefined && !seesPipeline(req, view, p)) throw new AppError('STRATEGY_NOT_FOUND', `${field}: no strategy "${id}"`);
  };

/** Every variant's strategy of an experiment body: another tenant's strategy answers as a missing one. */
const variantStrategies: Guard = (req, view) => {
  const variants = body(req).variants;
  if (!Array.isArray(variants)) return;
  variants.forEach((v, i) => strategyField(() => fields(v).strategy, `body/variants/${i}/strategy`)(req, view));
};

const experimentParam: Guard = (req, view) => {
  const id = (param(req, 'id') ?? '');
  const p = pipelineOf(view, 'experiments', id);
  if (p !== undefined && !seesPipeline(req, view, p)) throw new AppError('EXPERIMENT_NOT_FOUND', `params/id: no experiment "${id}"`);
};

/** Creating a document under an id another tenant uses is refused (ids are global), never a takeover. */
const idNotTaken =
  (kind: 'pipelines' | 'strategies' | 'experiments'): Guard =>
  (req, view) => {
    const id = (param(req, 'id') ?? '');
    const owner = kind === 'pipelines' ? pipelineTenants(view).get(id) : (() => {
      const p = pipelineOf(view, kind, id);
      return p === undefined ? undefined : (pipelineTenants(view).get(p) ?? null);
    })();
    if ((owner !== undefined && owner !== null && !sees(req, owner)) || (owner === null && tenantOfCaller(req) !== null)) throw idTaken(id);
  };

const scopeField =
  (get: (req: FastifyRequest) => unknown, field: string): Guard =>
  (req) => {
    const s = get(req);
    if (typeof s !== 'string') return;
    let tenant: string;
    try {
      tenant = parseScope(s).tenant;
    } catch {
      return; // the route answers INVALID_SCOPE
    }
    if (!sees(req, tenant)) throw new AppError('BUDGET_NOT_FOUND', `${field}: no budget at "${s}"`);
  };

/** A reservation may name its scope by `subject` instead of `scope`. */
const subjectField: Guard = (req) => {
  const t = fields(body(req).subject).tenant;
  if (typeof t === 'string' && !sees(req, t)) throw new AppError('BUDGET_NOT_FOUND', `body/subject/tenant: no budget of tenant "${t}"`);
};

const reservationParam: Guard = (req) => {
  const id = (param(req, 'id') ?? '');
  const { tenant } = splitNamespace(id);
  if (tenant !== null && !sees(req, tenant)) throw new AppError('RESERVATION_NOT_FOUND', `params/id: no reservation "${id}"`);
};

const all =
  (...gs: Guard[]): Guard =>
  (req, view) => {
    for (const g of gs) g(req, view);
  };

/**
 * How each route is confined to the caller's tenant, by `METHOD url`. `'route'` = the route itself filters or
 * namespaces by tenant (lists, span ingest, cost trees, keys); `'none'` = the route touches no tenant's objects
 * (health, docs) or only operators reach it. test/tenancy/matrix.test.ts fails for an API route without a rule.
 */
export const TENANT_RULES: Readonly<Record<string, Guard | 'route' | 'none'>> = {
  'PUT /v1/pipelines/:id': all(idNotTaken('pipelines'), strategyField((r) => body(r).defaultStrategy, 'body/defaultStrategy')),
  'GET /v1/pipelines/:id': pipelineParam('id'),
  'DELETE /v1/pipelines/:id': pipelineParam('id'),
  'GET /v1/pipelines': 'route',
  'PUT /v1/strategies/:id': all(pipelineField((r) => body(r).pipeline, 'body/pipeline'), idNotTaken('strategies')),
  'GET /v1/strategies/:id': strategyField((r) => param(r, 'id'), 'params/id'),
  'DELETE /v1/strategies/:id': strategyField((r) => param(r, 'id'), 'params/id'),
  'GET /v1/strategies/:id/stats': all(strategyField((r) => param(r, 'id'), 'params/id'), pipelineField((r) => query(r).pipeline, 'querystring/pipeline')),
  'GET /v1/strategies': 'route',
  'POST /v1/allocations': all(pipelineField((r) => body(r).pipeline, 'body/pipeline'), strategyField((r) => body(r).strategy, 'body/strategy')),
  'POST /v1/outcomes': 'route',
  'PUT /v1/budgets': scopeField((r) => body(r).scope, 'body/scope'),
  'DELETE /v1/budgets': scopeField((r) => query(r).scope, 'querystring/scope'),
  'POST /v1/budgets/:op': scopeField((r) => body(r).scope, 'body/scope'),
  'GET /v1/balances': scopeField((r) => query(r).scope, 'querystring/scope'),
  'POST /v1/reservations': all(scopeField((r) => body(r).scope, 'body/scope'), subjectField),
  'GET /v1/reservations/:id': reservationParam,
  'POST /v1/reservations/:id/draws': reservationParam,
  'POST /v1/reservations/:id/commit': reservationParam,
  'POST /v1/reservations/:id/release': reservationParam,
  'POST /v1/reservations/:id/extend': reservationParam,
  'PUT /v1/experiments/:id': all(pipelineField((r) => body(r).pipeline, 'body/pipeline'), idNotTaken('experiments'), variantStrategies),
  'GET /v1/experiments': 'route',
  'GET /v1/pipelines/:id/ope': all(pipelineParam('id'), strategyField((r) => query(r).strategy, 'querystring/strategy')),
  'POST /v1/spans': 'route',
  'POST /v1/traces': 'route',
  'GET /v1/sessions/:id/cost-tree': 'route',
  'GET /v1/reports/costs': 'route',
  'PUT /v1/price-overrides/:tenant': 'none',
  'GET /v1/price-overrides/:tenant': 'none',
  'DELETE /v1/price-overrides/:tenant': 'none',
  'POST /v1/keys': 'route',
  'GET /v1/keys': 'route',
  'DELETE /v1/keys/:id': 'route',
  'POST /v1/session': 'none',
  'DELETE /v1/session': 'none',
  'GET /v1/whoami': 'none',
  'GET /v1/console/budgets': 'route',
  'GET /v1/console/sessions': 'route',
  // Local evaluation: the synced state is filtered to the caller's tenant; each ingested record's pipeline is checked.
  'GET /v1/sync': 'route',
  'GET /v1/sync/stream': 'route',
  'POST /v1/decisions/batch': 'route',
};

/** Rules by URL pattern for route families (every experiment action, every per-pipeline sub-resource). */
function ruleFor(method: string, url: string): Guard | 'route' | 'none' | undefined {
  const exact = TENANT_RULES[`${method} ${url}`];
  if (exact !== undefined) return exact;
  if (url.startsWith('/v1/experiments/:id')) return experimentParam;
  if (url.startsWith('/v1/pipelines/:id/')) return pipelineParam('id');
  if (url.startsWith('/v1/models/:pipeline')) return pipelineParam('pipeline');
  return undefined;
}

/** The rule of a route, or undefined when it has none (the matrix test fails on such a route). */
export function tenantRuleOf(method: string, url: string): Guard | 'route' | 'none' | undefined {
  return ruleFor(method, url);
}

/**
 * Runs the route's tenant rule again against `view`: a control-plane write re-checks the caller's tenant against the
 * very state its conditional write expects (src/control/write.ts), so an object created by another tenant between
 * the preHandler and the write is never taken over.
 */
export function recheckTenant(req: FastifyRequest, view: ControlView): void {
  if (tenantOfCaller(req) === null) return;
  const url = req.routeOptions.url;
  if (url === undefined) return;
  const rule = ruleFor(req.method, url);
  if (typeof rule === 'function') rule(req, view);
}

/** The preHandler: runs the route's guard for confined callers (operators and auth-off skip it entirely). */
export function tenantGuard(view: () => ControlView): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    if (tenantOfCaller(req) === null) return;
    const url = req.routeOptions.url;
    if (url === undefined) return;
    const rule = ruleFor(req.method, url);
    if (typeof rule === 'function') rule(req, view());
    else if (rule === undefined && url.startsWith('/v1/')) {
      // Fail closed: a data route added without a tenant rule is refused to tenant keys.
      throw new AppError('FORBIDDEN', `${req.method} ${url}: this route has no tenant rule yet; only operator keys may call it`);
    }
  };
}
