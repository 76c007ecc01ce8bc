import { Type } from '@sinclair/typebox';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { DEFAULT_TENANT, idTaken, ownerFor, pipelineTenants, seesPipeline } from '../http/tenancy.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import { pipelineView, validatePipelineBody } from './model.js';
import { PipelineBody, PipelineParams, PipelineResponse } from './schema.js';
import { resolveModelPrices } from './tiers.js';
import { IdOwnedError, versionIn, withDoc } from '../control/store.js';
import { viewOf } from '../control/view.js';
import { writeFresh } from '../control/write.js';
import { recheckTenant } from '../tenancy/guard.js';

/** What the pipelines module is given (src/modules.ts). */
export type PipelinesDeps = Services<'view' | 'store' | 'snapshot'>;

/** Control plane for pipelines. Every PUT bumps the pipeline's version, which decisions record. */
export function pipelinesModule(core: PipelinesDeps): ModuleParts {
  return {
    name: 'pipelines',
    routes(app: ApiApp) {
      app.put(
        '/v1/pipelines/:id',
        {
          schema: {
            tags: ['pipelines'],
            summary: 'Create or replace a pipeline',
            params: PipelineParams,
            body: PipelineBody,
            response: { 200: PipelineResponse, ...errorResponses },
          },
        },
        async (req) => {
          const { id } = req.params;
          const body = req.body;
          validatePipelineBody(body);
          const written = await writeFresh(core, `params/id: pipeline "${id}"`, async () => {
            const view = core.view();
            recheckTenant(req, view);
            const expected = [versionIn(view.raw, 'pipelines', id)];
            if (body.defaultStrategy !== undefined) {
              const s = view.strategies.get(body.defaultStrategy);
              if (!s) throw new AppError('STRATEGY_NOT_FOUND', `body/defaultStrategy: no strategy "${body.defaultStrategy}"`);
              if (s.pipeline !== id) {
                throw new AppError('STRATEGY_PIPELINE_MISMATCH', `body/defaultStrategy: strategy "${s.id}" belongs to pipeline "${s.pipeline}"`);
              }
              expected.push(versionIn(view.raw, 'strategies', s.id));
            }
            const former = view.pipelines.has(id) ? undefined : await core.store.ownerOf('pipelines', id);
            const tenant = ownerFor(req, view, id, former);
            // Model prices resolve from the tenant's price overrides (its own, then `*`).
            expected.push(versionIn(view.raw, 'priceOverrides', tenant), versionIn(view.raw, 'priceOverrides', '*'));
            // Applies only if the pipeline (its owner), the default strategy and the price overrides are still as read.
            const doc = { ...resolveModelPrices(body, view, tenant), tenant };
            let version: number;
            try {
              version = await core.store.put('pipelines', id, doc, { expect: { docs: expected }, owner: tenant });
            } catch (e) {
              if (e instanceof IdOwnedError) throw idTaken(id);
              throw e;
            }
            return withDoc(view.raw, 'pipelines', id, version, doc);
          });
          await core.snapshot.refresh();
          return pipelineView(viewOf(written).pipelines.get(id)!);
        },
      );

      app.get(
        '/v1/pipelines/:id',
        { schema: { tags: ['pipelines'], summary: 'Get a pipeline', params: PipelineParams, response: { 200: PipelineResponse, ...errorResponses } } },
        async (req) => {
          const { id } = req.params;
          const p = core.view().pipelines.get(id);
          if (!p) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
          return pipelineView(p);
        },
      );

      app.get(
        '/v1/pipelines',
        { schema: { tags: ['pipelines'], summary: 'List pipelines', response: { 200: Type.Object({ items: Type.Array(PipelineResponse) }) } } },
        async (req) => ({
          items: [...core.view().pipelines.values()].filter((p) => seesPipeline(req, core.view(), p.id)).sort((a, b) => a.id.localeCompare(b.id)).map(pipelineView),
        }),
      );

      app.delete(
        '/v1/pipelines/:id',
        {
          schema: {
            tags: ['pipelines'],
            summary: 'Delete a pipeline with its strategies, feature declaration and model document (refused while it has experiments)',
            params: PipelineParams,
            response: { 204: Type.Null(), ...errorResponses },
          },
        },
        async (req, reply) => {
          const { id } = req.params;
          await writeFresh(core, `params/id: pipeline "${id}"`, async () => {
            const view = core.view();
            recheckTenant(req, view);
            if (!view.pipelines.has(id)) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
            const experiment = [...view.raw.kinds.experiments.values()].find((e) => (e.doc as { pipeline?: unknown }).pipeline === id);
            if (experiment) {
              throw new AppError('PIPELINE_IN_USE', `params/id: pipeline "${id}" has experiment "${experiment.id}"; stop and delete its experiments first`);
            }
            // The id stays with its tenant after the delete (a pipeline written before owners were recorded has none yet).
            await core.store.recordOwner('pipelines', id, pipelineTenants(view).get(id) ?? DEFAULT_TENANT);
            const strategies = [...view.strategies.values()].filter((s) => s.pipeline === id);
            // With its strategies, feature declaration and model document, against the whole control plane as read:
            // a strategy registered or an experiment created for it meanwhile makes the delete recompute.
            await core.store.delete(
              [
                { kind: 'pipelines', id },
                ...strategies.map((s) => ({ kind: 'strategies' as const, id: s.id })),
                { kind: 'features', id },
                { kind: 'models', id },
              ],
              { global: view.raw.version },
            );
          });
          await core.snapshot.refresh();
          return reply.status(204).send();
        },
      );
    },
  };
}
