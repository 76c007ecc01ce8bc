import { Type } from '@sinclair/typebox';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { ownerFor, seesPipeline } from '../http/tenancy.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import { pipelineView, validatePipelineBody } from './model.js';
import { PipelineBody, PipelineParams, PipelineResponse } from './schema.js';
import { resolveModelPrices } from './tiers.js';

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
          const view = core.view();
          if (body.defaultStrategy !== undefined) {
            const s = view.strategies.get(body.defaultStrategy);
            if (!s) throw new AppError('STRATEGY_NOT_FOUND', `body/defaultStrategy: no strategy "${body.defaultStrategy}"`);
            if (s.pipeline !== id) {
              throw new AppError('STRATEGY_PIPELINE_MISMATCH', `body/defaultStrategy: strategy "${s.id}" belongs to pipeline "${s.pipeline}"`);
            }
          }
          const tenant = ownerFor(req, view, id);
          await core.store.put('pipelines', id, { ...resolveModelPrices(body, view, tenant), tenant });
          await core.snapshot.refresh();
          return pipelineView(core.view().pipelines.get(id)!);
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
            summary: 'Delete a pipeline and the strategies registered for it',
            params: PipelineParams,
            response: { 204: Type.Null(), ...errorResponses },
          },
        },
        async (req, reply) => {
          const { id } = req.params;
          const view = core.view();
          if (!view.pipelines.has(id)) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
          const strategies = [...view.strategies.values()].filter((s) => s.pipeline === id);
          await core.store.delete([{ kind: 'pipelines', id }, ...strategies.map((s) => ({ kind: 'strategies' as const, id: s.id }))]);
          await core.snapshot.refresh();
          return reply.status(204).send();
        },
      );
    },
  };
}
