import type { ApiApp } from '../http/common.js';
import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import type { Closeable, ModuleParts, Services } from '../kernel/module.js';
import type { DecisionReader } from '../kernel/decision.js';
import type { StrategyKind } from '../strategies/types.js';
import { outcomeIsEvent, shadowHook, trainingSink } from './hooks.js';
import { defaultSplitOf, learnedKind, registerIngested, trainEveryOf, type LearnedParams } from './kind.js';
import { PendingBatcher } from './pending.js';
import { ControlDrops } from './control-drops.js';
import { stopTrainer } from './train-process.js';
import { learnerRoutes } from './routes.js';
import { learnedStrategies, trainingParams } from './learned-strategies.js';
import { TrainingService } from './training.js';
import { GuardMonitor } from './guard-monitor.js';
import { learnerKeys } from './keys.js';
import { TrainLock } from './train-lock.js';
import { WORKER_RUN_RETRY_MS } from '../redis/workers.js';

export const TRAIN_QUEUE = 'learner-train';
export const TICK_QUEUE = 'learner-tick';
/** How often the tick job ingests buffers, defaults expired decisions and checks time-based retraining. */
const TICK_MS = 5000;
/** How long a retrain job whose pipeline another process is retraining waits (delayed) before it tries again. */
export const TRAIN_LOCK_RETRY_MS = 1000;

export interface LearnerModule extends ModuleParts {
  readonly training: TrainingService;
  readonly pending: PendingBatcher;
  /** The runtime guard (checked on every tick). */
  readonly guard: GuardMonitor;
  enqueueTrain(pipeline: string): Promise<void>;
}

/** What the learner module is given (src/modules.ts): the allocation domain's decision records for default rewards. */
export type LearnerDeps = Services<
  'redis' | 'bullRedis' | 'keys' | 'kinds' | 'view' | 'store' | 'snapshot' | 'metrics' | 'log',
  'rewardWindowSeconds' | 'jobLockMs' | 'modelsDir' | 'modelVersionsKeep' | 'redisUrl' | 'redisClusterNodes' | 'trainEscalateAfterMs' | 'outcomeMarkerGraceSeconds'
> & { readonly decisions: DecisionReader };

/**
 * The learned strategy and its loop: the `learned` kind (serving from exported weights), the training
 * sink and shadow hook, `learner-train` (at most one job per pipeline waiting: deduplication id `train-<pipeline>`;
 * one running across all processes: the pipeline's retrain lock, train-lock.ts) and
 * `learner-tick` (a job scheduler every 5 s) queues, and the feature / model / OPE routes.
 */
export function learnerModule(core: LearnerDeps): LearnerModule {
  // A retrain that runs past APPORTION_TRAIN_ESCALATE_AFTER_MS at the trainer's idle priority is raised (train-process.ts).
  const training = new TrainingService(core, core.decisions, {}, true, { afterMs: core.config.trainEscalateAfterMs });
  const guard = new GuardMonitor(core, training.registry);
  const controlDrops = new ControlDrops({ redis: core.redis, keys: core.keys, log: core.log, counter: core.metrics.learnerControlUnavailable });
  const pending = new PendingBatcher(core.redis, { onError: (err) => core.log.warn({ err }, 'pending learned decisions not registered') });
  const prefix = core.keys.bullPrefix();
  const trainQueue = new Queue<{ pipeline: string }>(TRAIN_QUEUE, {
    connection: core.bullRedis,
    prefix,
    defaultJobOptions: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 }, attempts: 2, backoff: { type: 'fixed', delay: 2000 } },
  });
  const tickQueue = new Queue(TICK_QUEUE, { connection: core.bullRedis, prefix, defaultJobOptions: { removeOnComplete: true, removeOnFail: { count: 10 } } });

  const enqueueTrain = async (pipeline: string): Promise<void> => {
    // Deduplicated while a retrain of the pipeline is waiting: at most one waiting per pipeline. The worker frees
    // the key once the job holds the pipeline's retrain lock, so a retrain asked for while one runs (say, right after
    // its new version became visible, before its job completed) waits and runs after it instead of being dropped.
    await trainQueue.add('train', { pipeline }, { deduplication: { id: `train-${pipeline}` } });
  };

  // A failing guard check must not stop ingest and training: it is logged and retried on the next tick.
  const runGuard = async (pipeline: string) => {
    try {
      await guard.check(pipeline);
      // The pending candidate's arm (also during the safe start), before a retrain would put it to the gate.
      await guard.checkCandidate(pipeline);
    } catch (err) {
      core.log.warn({ err, pipeline }, 'learner guard check failed');
    }
  };

  const tick = async () => {
    const view = core.view();
    for (const p of view.pipelines.values()) {
      const params = trainingParams(view, p);
      if (!params) continue;
      await training.ingest(p.id);
      await runGuard(p.id);
      if (await training.due(p.id, params, trainEveryOf(params, p))) await enqueueTrain(p.id);
    }
  };

  const schedulers = async () => {
    await tickQueue.upsertJobScheduler('learner-tick', { every: TICK_MS }, { name: 'tick' });
  };

  return {
    name: 'learner',
    training,
    pending,
    guard,
    enqueueTrain,
    queues: [trainQueue, tickQueue],
    strategyKinds: [
      learnedKind({
        view: core.view,
        pending,
        keys: core.keys,
        retentionSeconds: core.config.rewardWindowSeconds,
        defaultSplit: defaultSplitOf(core),
        kinds: () => core.kinds,
        onControlUnavailable: (p, version, reason) => controlDrops.record(p, version, reason),
      }) as unknown as StrategyKind<never>,
    ],
    sinks: [trainingSink({ view: core.view, keys: core.keys, retentionSeconds: core.config.rewardWindowSeconds })],
    shadows: [shadowHook({ kinds: core.kinds })],
    onDecisionRecorded: (id, recorded) => pending.settle(id, recorded),
    onDecisionIngested: (record) => registerIngested({ view: core.view, pending, keys: core.keys, retentionSeconds: core.config.rewardWindowSeconds }, record),
    async onOutcomeApplied(job) {
      const view = core.view();
      const p = view.pipelines.get(job.decision.pipeline);
      if (!p) return;
      const s = learnedStrategies(view, p)[0];
      if (!s) return;
      // Only outcomes the training sink logged as events count towards a retrain: a late one (after its decision's
      // wait window, or after the default-reward sweep claimed it) adds nothing to the buffer.
      if (!outcomeIsEvent(view, job, core.config.rewardWindowSeconds)) return;
      if (await training.countOutcome(p.id, trainEveryOf(s.params as LearnedParams, p))) await enqueueTrain(p.id);
    },
    routes(app: ApiApp) {
      learnerRoutes(app, core, training, enqueueTrain);
    },
    async startWorkers(): Promise<readonly Closeable[]> {
      // TensorFlow.js is not loaded here at start: a retrain runs in the trainer child, which loads it on its first
      // job (train-process.ts); this process needs it only if it trains in-process (no child could start). Loading it
      // anyway took seconds of a start-up on a busy machine. The backend is said at the first trained retrain (and
      // every model version's metrics name it).
      let backendSaid = false;
      const trainWorker = new Worker<{ pipeline: string }>(
        TRAIN_QUEUE,
        async (job: Job<{ pipeline: string }>, token?: string) => {
          let res: Awaited<ReturnType<typeof training.train>>;
          const { pipeline } = job.data;
          // concurrency 1 is per process: with several workers, the lock keeps retrains of one pipeline from
          // overlapping (two would train on the same events and the second would supersede the first unjudged).
          const lock = new TrainLock(core.redis, learnerKeys(core.keys, pipeline).trainLock, core.config.jobLockMs, (err) =>
            core.log.error({ err, pipeline }, 'learner retrain lock lost while training (another retrain of the pipeline may start)'),
          );
          if (!(await lock.acquire())) {
            // Another process retrains the pipeline: this job waits (delayed, keeping its deduplication key, so more
            // requests join it) and tries again.
            await job.moveToDelayed(Date.now() + TRAIN_LOCK_RETRY_MS, token);
            throw new DelayedError();
          }
          try {
            await job.removeDeduplicationKey();
            res = await training.train(pipeline);
          } catch (err) {
            // Loud: a retrain that fails leaves the pipeline on its old model, silently, for as long as it keeps failing.
            core.metrics.learnerRetrains.inc({ result: 'failed' });
            core.log.error({ err, pipeline, attempt: job.attemptsMade + 1 }, 'learner retrain FAILED');
            throw err;
          } finally {
            await lock.release().catch((err: unknown) => core.log.warn({ err, pipeline }, 'learner retrain lock not released (it expires on its own)'));
          }
          core.metrics.learnerRetrains.inc({ result: res.trained ? 'trained' : 'skipped' });
          const backend = res.model?.metrics.backend;
          if (backend !== undefined && backend !== 'tiers' && !backendSaid) {
            backendSaid = true;
            core.log.info({ backend }, `learner: TensorFlow.js backend "${backend}"`);
          }
          if (!res.trained) core.log.info({ pipeline, reason: res.reason }, 'learner retrain skipped');
          return { trained: res.trained, reason: res.reason, version: res.model?.version };
        },
        // Training is CPU-bound: one at a time per process; the lock outlives a long retrain.
        { connection: core.bullRedis, prefix, concurrency: 1, lockDuration: Math.max(core.config.jobLockMs, 120_000), runRetryDelay: WORKER_RUN_RETRY_MS },
      );
      const tickWorker = new Worker(TICK_QUEUE, tick, { connection: core.bullRedis, prefix, concurrency: 1, runRetryDelay: WORKER_RUN_RETRY_MS });
      for (const [w, what] of [
        [trainWorker, 'train'],
        [tickWorker, 'tick'],
      ] as const) {
        w.on('failed', (job, err) => core.log.warn({ err, jobId: job?.id }, `learner ${what} job failed`));
        w.on('error', (err) => core.log.error({ err }, `learner ${what} worker error`));
      }
      await schedulers();
      await Promise.all([trainWorker.waitUntilReady(), tickWorker.waitUntilReady()]);
      return [trainWorker, tickWorker];
    },
    schedulers,
    async close() {
      await Promise.all([pending.flush(), controlDrops.flush()]);
      stopTrainer();
      await Promise.allSettled([trainQueue.close(), tickQueue.close()]);
    },
  };
}
