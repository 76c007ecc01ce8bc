import type { FastifyRequest } from 'fastify';
import type { ControlView } from '../control/view.js';
import { AppError } from '../errors/app-error.js';

/**
 * Tenant scope. A tenant key sees and changes only its own tenant's objects; another tenant's object answers the
 * same 404 as a missing one, so ids do not leak. Operator keys (the env keys) and auth-off see every tenant.
 *
 * Ownership: a pipeline carries its tenant (field `tenant` of the stored document; documents written before
 * tenants existed belong to `default`). Strategies, experiments, feature declarations and models belong to
 * their pipeline's tenant. Budgets and reservations carry the tenant in the scope (`tenant:<t>/…`) and in the
 * reservation id (`<t>~<random>`). Spans written by a tenant key are stored under the tenant's trace and session
 * namespace and billed to the tenant (src/costs/module.ts). See docs/tenants.md.
 */

/** Tenant names follow the budget scope's name rule, so `tenant:<name>` is always a valid scope segment. */
export const TENANT_PATTERN = '^[A-Za-z0-9_.@-]{1,128}$';
const TENANT = new RegExp(TENANT_PATTERN);
export const isTenantName = (t: string): boolean => TENANT.test(t);

/** The tenant of documents written before tenants existed, and of operator writes that name none. */
export const DEFAULT_TENANT = 'default';
/** Header by which an operator key names the tenant it creates a pipeline for. */
export const TENANT_HEADER = 'x-apportion-tenant';

/** pipeline id → owning tenant, built once per control-plane view. */
export function pipelineTenants(view: ControlView): ReadonlyMap<string, string> {
  return view.memo('tenancy:pipelines', () => {
    const m = new Map<string, string>();
    for (const v of view.raw.kinds.pipelines.values()) {
      const t = (v.doc as { tenant?: unknown }).tenant;
      m.set(v.id, typeof t === 'string' ? t : DEFAULT_TENANT);
    }
    return m;
  });
}

/** The tenant the caller is confined to, or null (every tenant). */
export function tenantOfCaller(req: FastifyRequest): string | null {
  return req.principal?.tenant ?? null;
}

/** Whether the caller may see an object of `tenant` (undefined: an object of no known tenant → operators only). */
export function sees(req: FastifyRequest, tenant: string | undefined): boolean {
  const t = tenantOfCaller(req);
  return t === null || t === tenant;
}

/** Whether the caller may see pipeline `id` (false for a missing pipeline when the caller is confined). */
export function seesPipeline(req: FastifyRequest, view: ControlView, id: string): boolean {
  const t = tenantOfCaller(req);
  return t === null || pipelineTenants(view).get(id) === t;
}

/** The answer to writing an id that another tenant holds (ids are global). */
export function idTaken(id: string): AppError {
  return new AppError('ID_TAKEN', `params/id: "${id}" is used by another tenant; ids are global`);
}

/**
 * The owner of a pipeline being written: the existing owner on replace; on create the caller's tenant, or for an
 * operator the `x-apportion-tenant` header (default: `former`, else `default`). `former` is the tenant that created
 * the id before (the id's owner is kept after a delete): re-creating a deleted pipeline is for that tenant only, so
 * another tenant never inherits the statistics, learner events and experiments kept under the id (ID_TAKEN).
 */
export function ownerFor(req: FastifyRequest, view: ControlView, pipelineId: string, former?: string): string {
  const existing = pipelineTenants(view).get(pipelineId);
  if (existing !== undefined) return existing;
  const t = tenantOfCaller(req);
  if (t !== null) {
    if (former !== undefined && former !== t) throw idTaken(pipelineId);
    return t;
  }
  const h = req.headers[TENANT_HEADER];
  if (typeof h === 'string' && h !== '') {
    if (!isTenantName(h)) throw new AppError('VALIDATION_FAILED', `headers/${TENANT_HEADER}: "${h}" is not a tenant name`);
    if (former !== undefined && former !== h) throw new AppError('ID_TAKEN', `params/id: "${pipelineId}" was created by tenant "${former}"; ids are global and stay with their tenant after a delete`);
    return h;
  }
  return former ?? DEFAULT_TENANT;
}
