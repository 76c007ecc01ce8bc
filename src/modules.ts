import { allocationModule } from './allocation/module.js';
import { budgetsModule } from './budgets/module.js';
import { consoleModule } from './console/module.js';
import { costsModule } from './costs/module.js';
import { feedbackModule } from './feedback/module.js';
import { outcomeStats } from './feedback/stats-reader.js';
import { learnerModule } from './learner/module.js';
import { pipelinesModule } from './pipelines/routes.js';
import { rolloutModule } from './rollout/module.js';
import type { Core } from './kernel/core.js';
import { servicesOf, type ModuleParts } from './kernel/module.js';
import { strategiesModule } from './strategies/routes.js';
import { tokenizerFor } from './strategies/tokens.js';
import { syncModule } from './sync/module.js';
import { RedisClock } from './redis/clock.js';

/**
 * Wires every domain module in one place. Each module is given only the shared services and settings it declares
 * (its `…Deps` type; `servicesOf` builds an object of just those), and a domain that needs another's data is
 * given that domain's service here — the table "What each module is given" in docs/architecture.md. Order
 * matters only for routers (consulted in order) and for modules that take another module's service.
 */
export async function createModules(core: Core): Promise<ModuleParts[]> {
  const modules: ModuleParts[] = [];
  const all = () => modules;
  // One estimate of Redis's clock per process: reservation deadlines and decision records' pending deadlines are on it.
  const clock = new RedisClock({
    redis: core.redis,
    onOffset: (offsetMs, large) => {
      core.metrics.redisClockOffset.set(offsetMs);
      if (large) core.log.warn({ offsetMs }, 'API host clock differs from the Redis server clock; reservation and decision-record deadlines are corrected for it, but sync the clocks (NTP)');
    },
  });
  const allocation = allocationModule({
    ...servicesOf(core, ['redis', 'keys', 'view', 'kinds', 'metrics', 'log', 'store', 'snapshot'], ['rewardWindowSeconds', 'redisCommandTimeoutMs']),
    all,
    clock,
    tokenizer: tokenizerFor,
  });
  const stats = outcomeStats(servicesOf(core, ['redis', 'keys'], ['rewardWindowSeconds', 'outcomeMarkerGraceSeconds']));
  modules.push(
    pipelinesModule(servicesOf(core, ['view', 'store', 'snapshot', 'redis', 'bullRedis', 'keys', 'log'], ['rewardWindowSeconds', 'outcomeMarkerGraceSeconds'])),
    strategiesModule({ ...servicesOf(core, ['view', 'store', 'snapshot', 'kinds']), stats }),
    allocation,
    feedbackModule({
      ...servicesOf(
        core,
        ['redis', 'bullRedis', 'queueRedis', 'keys', 'view', 'metrics', 'log'],
        [
          'rewardWindowSeconds',
          'outcomeMarkerGraceSeconds',
          'outcomeBatchMax',
          'outcomeConcurrency',
          'redisCommandTimeoutMs',
          'jobLockMs',
          'jobKeepCompletedSeconds',
          'jobKeepCompletedCount',
          'jobKeepFailedSeconds',
          'jobKeepFailedCount',
        ],
      ),
      decisions: allocation.decisions,
      all,
    }),
  );
  const budgets = budgetsModule({ ...servicesOf(core, ['redis', 'bullRedis', 'keys', 'metrics', 'log'], ['idempotencyTtlSeconds', 'budgetAlertWebhook', 'reservationSweepMs']), clock });
  modules.push(budgets);
  modules.push(rolloutModule(servicesOf(core, ['redis', 'bullRedis', 'keys', 'kinds', 'view', 'snapshot', 'log'], ['rolloutIntervalMs'])));
  const costs = costsModule(servicesOf(core, ['redis', 'keys', 'view', 'store', 'snapshot', 'metrics', 'log'], ['spanRetentionDays', 'maxSpansPerTrace']));
  modules.push(costs);
  modules.push(
    learnerModule({
      ...servicesOf(
        core,
        ['redis', 'bullRedis', 'keys', 'kinds', 'view', 'store', 'snapshot', 'metrics', 'log'],
        ['rewardWindowSeconds', 'jobLockMs', 'modelsDir', 'modelVersionsKeep', 'redisUrl', 'redisClusterNodes', 'trainEscalateAfterMs', 'outcomeMarkerGraceSeconds'],
      ),
      decisions: allocation.decisions,
    }),
  );
  modules.push(consoleModule({ ...servicesOf(core, ['log']), budgets, costs }));
  modules.push(syncModule({ ...servicesOf(core, ['view', 'snapshot', 'metrics'], ['rewardWindowSeconds', 'textTokenizeMaxChars']), decisions: allocation.decisions, all }));
  for (const m of modules) for (const k of m.strategyKinds ?? []) core.kinds.register(k);
  return modules;
}
