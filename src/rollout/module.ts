import type { ApiApp } from '../http/common.js';
import { Queue, Worker } from 'bullmq';
import type { Closeable, ModuleParts, Services } from '../kernel/module.js';
import type { StrategyKind } from '../strategies/types.js';
import { experimentArms, experimentSinks } from './arms.js';
import { probeCutKind } from './probe.js';
import { experimentRouter } from './router.js';
import { experimentRoutes } from './routes.js';
import { ExperimentService } from './service.js';
import { ExperimentStore } from './store.js';
import { WORKER_RUN_RETRY_MS } from '../redis/workers.js';

export const ROLLOUT_QUEUE = 'rollout';

export interface RolloutModule extends ModuleParts {
  readonly service: ExperimentService;
}

/** What the rollout module is given (src/modules.ts). */
export type RolloutDeps = Services<'redis' | 'bullRedis' | 'keys' | 'kinds' | 'view' | 'snapshot' | 'log', 'rolloutIntervalMs'>;

/**
 * Rollout experiments: routes strategies to units (router), counts outcomes per variant and phase
 * (arms + observation sinks, in the outcome's Lua call), and evaluates guardrails, SRM and ramps in a
 * BullMQ repeatable job on the `rollout` queue.
 */
export function rolloutModule(core: RolloutDeps): RolloutModule {
  const store = new ExperimentStore(core.redis, core.keys);
  const service = new ExperimentService({
    store,
    redis: core.redis,
    keys: core.keys,
    view: core.view,
    refresh: () => core.snapshot.refresh(),
    log: core.log,
  });
  const queue = new Queue(ROLLOUT_QUEUE, {
    connection: core.bullRedis,
    prefix: core.keys.bullPrefix(),
    defaultJobOptions: { removeOnComplete: 100, removeOnFail: 500 },
  });
  // One scheduler id: however many worker processes upsert it, the job runs once per interval.
  const schedulers = async () => {
    await queue.upsertJobScheduler('rollout-evaluate', { every: core.config.rolloutIntervalMs }, { name: 'evaluate', data: {} });
  };
  return {
    name: 'rollout',
    service,
    routers: [experimentRouter],
    arms: [experimentArms(core.keys, core.view)],
    sinks: experimentSinks(core.keys, core.view),
    strategyKinds: [probeCutKind(core.kinds) as unknown as StrategyKind<never>],
    queues: [queue],
    routes(app: ApiApp) {
      experimentRoutes(app, service, core.view);
    },
    async startWorkers(): Promise<readonly Closeable[]> {
      const worker = new Worker(
        ROLLOUT_QUEUE,
        async () => {
          const out = await service.evaluateAll();
          return out.filter((o) => o.action !== 'none' && o.action !== 'skipped');
        },
        { connection: core.bullRedis, prefix: core.keys.bullPrefix(), concurrency: 1, runRetryDelay: WORKER_RUN_RETRY_MS },
      );
      worker.on('error', (err) => core.log.error({ err }, 'rollout worker error'));
      await schedulers();
      await worker.waitUntilReady();
      return [worker];
    },
    schedulers,
    async close() {
      await queue.close();
    },
  };
}
