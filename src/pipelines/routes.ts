import { Type } from '@sinclair/typebox';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { DEFAULT_TENANT, idTaken, ownerFor, pipelineTenants, seesPipeline } from '../http/tenancy.js';
import { Queue, Worker } from 'bullmq';
import type { Closeable, ModuleParts, Services } from '../kernel/module.js';
import { PipelinePurger } from './purge.js';
import { pipelineView, validatePipelineBody } from './model.js';
import { PipelineBody, PipelineParams, PipelineResponse } from './schema.js';
import { resolveModelPrices } from './tiers.js';
import { IdOwnedError, versionIn, withDoc } from '../control/store.js';
import { viewOf } from '../control/view.js';
import { writeFresh } from '../control/write.js';
import { recheckTenant } from '../tenancy/guard.js';
import { WORKER_RUN_RETRY_MS } from '../redis/workers.js';

/** What the pipelines module is given (src/modules.ts). */
export type PipelinesDeps = Services<'view' | 'store' | 'snapshot' | 'redis' | 'bullRedis' | 'keys' | 'log', 'rewardWindowSeconds' | 'outcomeMarkerGraceSeconds'>;

export const PIPELINES_QUEUE = 'pipelines';
/** How often the sweep over deleted pipelines runs (PipelinePurger.sweep; its passes are minutes apart). */
const SWEEP_EVERY_MS = 60_000;

export interface PipelinesModule extends ModuleParts {
  /** Removes deleted pipelines' data (the DELETE route, and the sweep of the `pipelines` queue). */
  readonly purger: PipelinePurger;
}

/**
 * Control plane for pipelines. Every PUT bumps the pipeline's version, which decisions record. A delete removes
 * what is kept under the pipeline's id (PipelinePurger), and a repeatable job on the `pipelines` queue sweeps the
 * deleted pipelines again for what late writers put back.
 */
export function pipelinesModule(core: PipelinesDeps): PipelinesModule {
  const purger = new PipelinePurger(core);
  const queue = new Queue(PIPELINES_QUEUE, {
    connection: core.bullRedis,
    prefix: core.keys.bullPrefix(),
    defaultJobOptions: { removeOnComplete: 100, removeOnFail: 500 },
  });
  // One scheduler id: however many worker processes upsert it, the sweep runs once per interval.
  const schedulers = async () => {
    await queue.upsertJobScheduler('pipelines-purge', { every: SWEEP_EVERY_MS }, { name: 'purge', data: {} });
  };
  return {
    name: 'pipelines',
    purger,
    queues: [queue],
    async startWorkers(): Promise<readonly Closeable[]> {
      const worker = new Worker(PIPELINES_QUEUE, async () => purger.sweep(), { connection: core.bullRedis, prefix: core.keys.bullPrefix(), concurrency: 1, runRetryDelay: WORKER_RUN_RETRY_MS });
      worker.on('error', (err) => core.log.error({ err }, 'pipelines worker error'));
      await schedulers();
      await worker.waitUntilReady();
      return [worker];
    },
    schedulers,
    async close() {
      await queue.close();
    },
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
          // An id deleted a moment ago gets its data removed before it is created again, even if the deleting
          // process did not get to it (the journal still holds it), so the new pipeline starts empty.
          if (!core.view().pipelines.has(id)) await purger.beforeCreate(id);
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
          const deletedAt = await writeFresh(core, `params/id: pipeline "${id}"`, async () => {
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
            const { version } = versionIn(view.raw, 'pipelines', id);
            // With its strategies, feature declaration and model document, against the whole control plane as read:
            // a strategy registered or an experiment created for it meanwhile makes the delete recompute. The
            // journal entry goes with it, so its data is removed even if this process dies before it gets to it.
            await core.store.delete(
              [
                { kind: 'pipelines', id },
                ...strategies.map((s) => ({ kind: 'strategies' as const, id: s.id })),
                { kind: 'features', id },
                { kind: 'models', id },
              ],
              { global: view.raw.version },
              purger.journalEntry(id, version),
            );
            return version;
          });
          await core.snapshot.refresh();
          // Only now that the delete committed: its data goes (the sweep finishes it if this fails).
          try {
            await purger.purge(id, deletedAt);
          } catch (err) {
            core.log.error({ err, pipeline: id }, 'deleted pipeline: its data is removed by the next sweep');
          }
          return reply.status(204).send();
        },
      );
    },
  };
}
