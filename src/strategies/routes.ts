import { Type } from '@sinclair/typebox';
import { AppError } from '../errors/app-error.js';
import type { OutcomeStats } from '../feedback/stats-reader.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { seesPipeline } from '../http/tenancy.js';
import { Id } from '../pipelines/schema.js';
import { RequirementMissingError, versionIn, withDoc } from '../control/store.js';
import { viewOf } from '../control/view.js';
import { writeFresh } from '../control/write.js';
import { recheckTenant } from '../tenancy/guard.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import { BUILTIN_UNIFORM_ID, StrategyBody, StrategyResponse, type StrategyDef } from './schema.js';
import { validateStrategy } from './service.js';
import { BUILTIN_KINDS } from './registry.js';

const Params = Type.Object({ id: Id });
const StatsParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
const StatsQuery = Type.Object({ pipeline: Type.Optional(Id) });

const view = (s: StrategyDef) => ({
  id: s.id,
  version: s.version,
  pipeline: s.pipeline,
  kind: s.kind,
  params: { ...s.params },
  ...(s.description !== undefined ? { description: s.description } : {}),
});

const Moments = Type.Object({ n: Type.Number(), mean: Type.Number(), variance: Type.Number(), stddev: Type.Number(), stderr: Type.Number() });
const AgentStatsSchema = Type.Object({
  n: Type.Integer(),
  utilization: Type.Number(),
  ceilingHitRate: Type.Number(),
  truncationRate: Type.Number(),
  qualityWhenHit: Type.Union([Type.Number(), Type.Null()]),
  meanConsumed: Type.Number(),
  meanAllocated: Type.Number(),
});
export const StatsResponse = Type.Object({
  strategy: Type.String(),
  pipeline: Type.String(),
  count: Type.Integer(),
  quality: Moments,
  cost: Type.Intersect([Moments, Type.Object({ total: Type.Number() })]),
  agents: Type.Record(Type.String(), AgentStatsSchema),
  models: Type.Optional(Type.Record(Type.String(), Type.Record(Type.String(), AgentStatsSchema), { description: 'Per agent and served model (pipelines with model tiers).' })),
});

/** What the strategies module is given (src/modules.ts). */
export interface StrategiesDeps extends Services<'view' | 'store' | 'snapshot' | 'kinds'> {
  /** The feedback domain's statistics, for GET /v1/strategies/:id/stats. */
  readonly stats: OutcomeStats;
}

/** Control plane for strategies, and their outcome statistics. */
export function strategiesModule(core: StrategiesDeps): ModuleParts {
  return {
    name: 'strategies',
    strategyKinds: BUILTIN_KINDS,
    routes(app: ApiApp) {
      app.put(
        '/v1/strategies/:id',
        {
          schema: {
            tags: ['strategies'],
            summary: 'Create or replace a strategy',
            params: Params,
            body: StrategyBody,
            response: { 200: StrategyResponse, ...errorResponses },
          },
        },
        async (req) => {
          const { id } = req.params;
          const body = req.body;
          const written = await writeFresh(core, `params/id: strategy "${id}"`, async () => {
            const current = core.view();
            recheckTenant(req, current);
            const pipeline = current.pipelines.get(body.pipeline);
            if (!pipeline) throw new AppError('PIPELINE_NOT_FOUND', `body/pipeline: no pipeline "${body.pipeline}"`);
            const existing = current.strategies.get(id);
            if (existing && existing.pipeline !== body.pipeline) {
              throw new AppError('STRATEGY_PIPELINE_MISMATCH', `body/pipeline: strategy "${id}" belongs to pipeline "${existing.pipeline}"`);
            }
            validateStrategy(core.kinds, body, pipeline);
            try {
              // Applies only if the pipeline it was validated against (agents, owner) and the strategy are as read.
              const version = await core.store.put('strategies', id, body, {
                requires: { kind: 'pipelines', id: body.pipeline },
                expect: { docs: [versionIn(current.raw, 'pipelines', body.pipeline), versionIn(current.raw, 'strategies', id)] },
              });
              return withDoc(current.raw, 'strategies', id, version, body);
            } catch (e) {
              if (e instanceof RequirementMissingError) throw new AppError('PIPELINE_NOT_FOUND', `body/pipeline: no pipeline "${body.pipeline}"`);
              throw e;
            }
          });
          await core.snapshot.refresh();
          return view(viewOf(written).strategies.get(id)!);
        },
      );

      app.get(
        '/v1/strategies/:id',
        { schema: { tags: ['strategies'], summary: 'Get a strategy', params: Params, response: { 200: StrategyResponse, ...errorResponses } } },
        async (req) => {
          const { id } = req.params;
          const s = core.view().strategies.get(id);
          if (!s) throw new AppError('STRATEGY_NOT_FOUND', `params/id: no strategy "${id}"`);
          return view(s);
        },
      );

      app.get(
        '/v1/strategies',
        {
          schema: {
            tags: ['strategies'],
            summary: 'List strategies, optionally of one pipeline',
            querystring: StatsQuery,
            response: { 200: Type.Object({ items: Type.Array(StrategyResponse) }) },
          },
        },
        async (req) => {
          const { pipeline } = req.query;
          const items = [...core.view().strategies.values()]
            .filter((s) => (pipeline === undefined || s.pipeline === pipeline) && seesPipeline(req, core.view(), s.pipeline))
            .sort((a, b) => a.id.localeCompare(b.id))
            .map(view);
          return { items };
        },
      );

      app.delete(
        '/v1/strategies/:id',
        { schema: { tags: ['strategies'], summary: 'Delete a strategy', params: Params, response: { 204: Type.Null(), ...errorResponses } } },
        async (req, reply) => {
          const { id } = req.params;
          const deleted = await writeFresh(core, `params/id: strategy "${id}"`, async () => {
            const current = core.view();
            recheckTenant(req, current);
            const s = current.strategies.get(id);
            if (!s) throw new AppError('STRATEGY_NOT_FOUND', `params/id: no strategy "${id}"`);
            const p = current.pipelines.get(s.pipeline);
            if (p?.defaultStrategy === id) {
              throw new AppError('STRATEGY_IN_USE', `params/id: strategy "${id}" is the default of pipeline "${p.id}"`);
            }
            const user = experimentUsing(current.raw.kinds.experiments.values(), id);
            if (user) {
              throw new AppError('STRATEGY_IN_USE', `params/id: strategy "${id}" is a variant of experiment "${user.id}" (${user.status}); change, stop or delete the experiment first`);
            }
            // Applies only to the whole control plane as read: no pipeline made it its default and no experiment
            // took it as a variant meanwhile.
            await core.store.delete([{ kind: 'strategies', id }], { global: current.raw.version });
            return { pipeline: s.pipeline, version: versionIn(current.raw, 'strategies', id).version };
          });
          await core.snapshot.refresh();
          // Only now that the delete committed: its statistics go, and a strategy re-created under the id starts at 0.
          await core.stats.forget(deleted.pipeline, id, deleted.version);
          return reply.status(204).send();
        },
      );

      app.get(
        '/v1/strategies/:id/stats',
        {
          schema: {
            tags: ['strategies'],
            summary: 'Outcome statistics of a strategy (quality, cost, per-agent utilization and ceiling hits)',
            description: `Use id ${BUILTIN_UNIFORM_ID} with ?pipeline= for a pipeline's built-in uniform fallback.`,
            params: StatsParams,
            querystring: StatsQuery,
            response: { 200: StatsResponse, ...errorResponses },
          },
        },
        async (req) => {
          const { id } = req.params;
          const { pipeline: pq } = req.query;
          let pipeline: string;
          if (id === BUILTIN_UNIFORM_ID) {
            if (!pq) throw new AppError('VALIDATION_FAILED', `querystring/pipeline is required for ${BUILTIN_UNIFORM_ID}`);
            if (!core.view().pipelines.has(pq)) throw new AppError('PIPELINE_NOT_FOUND', `querystring/pipeline: no pipeline "${pq}"`);
            pipeline = pq;
          } else {
            const s = core.view().strategies.get(id);
            if (!s) throw new AppError('STRATEGY_NOT_FOUND', `params/id: no strategy "${id}"`);
            pipeline = s.pipeline;
          }
          const stats = await core.stats.strategy(pipeline, id);
          return { strategy: id, pipeline, ...stats };
        },
      );
    },
  };
}

/**
 * An experiment that has not ended (draft, running, paused, or rolled back, which serves its control) with `strategy`
 * as a variant. Read by shape from the raw documents: the experiments domain builds on this one, not the reverse.
 */
function experimentUsing(experiments: Iterable<{ readonly id: string; readonly doc: unknown }>, strategy: string): { id: string; status: string } | undefined {
  for (const e of experiments) {
    const d = e.doc as { state?: { status?: unknown }; variants?: readonly { strategy?: unknown }[] };
    const status = typeof d.state?.status === 'string' ? d.state.status : 'draft';
    if (status !== 'stopped' && (d.variants ?? []).some((v) => v.strategy === strategy)) return { id: e.id, status };
  }
  return undefined;
}
