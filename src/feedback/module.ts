import { Worker, type Job } from 'bullmq';
import type { DecisionStore } from '../allocation/decisions.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { seesPipeline } from '../http/tenancy.js';
import type { Closeable, ModuleParts, Services } from '../kernel/module.js';
import { strategyArms } from './arms.js';
import { OutcomeIntake } from './intake.js';
import { applyOutcome } from './processor.js';
import { createOutcomesQueue, OUTCOMES_QUEUE, outcomesOf, outcomeWorkerSettings, type OutcomeJob, type OutcomeJobData } from './queue.js';
import { OutcomeAccepted, OutcomeBody } from './schema.js';
import { WORKER_RUN_RETRY_MS } from '../redis/workers.js';

/** What the feedback module is given (src/modules.ts). */
export interface FeedbackDeps
  extends Services<
    'redis' | 'bullRedis' | 'queueRedis' | 'keys' | 'view' | 'metrics' | 'log',
    | 'rewardWindowSeconds'
    | 'outcomeMarkerGraceSeconds'
    | 'outcomeBatchMax'
    | 'outcomeConcurrency'
    | 'redisCommandTimeoutMs'
    | 'jobLockMs'
    | 'jobKeepCompletedSeconds'
    | 'jobKeepCompletedCount'
    | 'jobKeepFailedSeconds'
    | 'jobKeepFailedCount'
  > {
  /** The allocation domain's decision records: intake reads an outcome's decision through it. */
  readonly decisions: DecisionStore;
  /** Every module, for their arms, sinks and outcome-applied callbacks (read when the worker starts). */
  readonly all: () => readonly ModuleParts[];
}

/** Outcomes: intake (POST /v1/outcomes → BullMQ) and the worker that applies them to statistics. */
export function feedbackModule(core: FeedbackDeps): ModuleParts {
  const { all } = core;
  const queue = createOutcomesQueue(core.queueRedis, core.keys.bullPrefix(), {
    completedAgeSeconds: core.config.jobKeepCompletedSeconds,
    completedCount: core.config.jobKeepCompletedCount,
    failedAgeSeconds: core.config.jobKeepFailedSeconds,
    failedCount: core.config.jobKeepFailedCount,
  }, { spanMs: (core.config.rewardWindowSeconds + core.config.outcomeMarkerGraceSeconds) * 1000 });
  const intake = new OutcomeIntake(core.decisions, queue, {
    batchMax: core.config.outcomeBatchMax,
    enqueueTimeoutMs: core.config.redisCommandTimeoutMs,
    onBatch: (n) => core.metrics.outcomeBatchSize.observe(n),
    queueStatus: () => core.queueRedis.status,
  });
  return {
    name: 'feedback',
    queues: [queue],
    routes(app: ApiApp) {
      app.post(
        '/v1/outcomes',
        {
          config: { access: 'client' },
          schema: {
            tags: ['outcomes'],
            summary: 'Report the outcome of a decision (answers once the job is durably queued)',
            body: OutcomeBody,
            response: { 202: OutcomeAccepted, ...errorResponses },
          },
        },
        async (req, reply) => {
          const body = req.body;
          await intake.accept(body, (pipeline) => seesPipeline(req, core.view(), pipeline));
          core.metrics.outcomesAccepted.inc();
          return reply.status(202).send({ accepted: true, decisionId: body.decisionId });
        },
      );
    },
    async startWorkers(): Promise<readonly Closeable[]> {
      const modules = all();
      const deps = {
        redis: core.redis,
        keys: core.keys,
        view: core.view,
        arms: [strategyArms(core.keys), ...modules.flatMap((m) => m.arms ?? [])],
        sinks: modules.flatMap((m) => m.sinks ?? []),
        rewardWindowSeconds: core.config.rewardWindowSeconds,
        markerGraceSeconds: core.config.outcomeMarkerGraceSeconds,
        onApplied: async (job: OutcomeJob) => {
          for (const m of modules) await m.onOutcomeApplied?.(job);
        },
      };
      const worker = new Worker<OutcomeJobData>(
        OUTCOMES_QUEUE,
        // The outcomes of one job are applied concurrently (their Lua calls share a pipeline). If any fails the
        // job is retried; those already applied find their marker and count nothing.
        async (job: Job<OutcomeJobData>) => {
          const results = await Promise.all(outcomesOf(job.data).map((o) => applyOutcome(deps, o)));
          let applied = 0;
          let expired = 0;
          let deleted = 0;
          for (const r of results) if (r === 'applied') applied++;
          else if (r === 'expired') expired++;
          else if (r === 'deleted') deleted++;
          const duplicate = results.length - applied - expired - deleted;
          if (applied > 0) core.metrics.outcomesProcessed.inc({ result: 'applied' }, applied);
          if (duplicate > 0) core.metrics.outcomesProcessed.inc({ result: 'duplicate' }, duplicate);
          if (expired > 0) core.metrics.outcomesProcessed.inc({ result: 'expired' }, expired);
          // A decision of a pipeline deleted since: nothing written (its data is gone, or belongs to a re-created pipeline).
          if (deleted > 0) core.metrics.outcomesProcessed.inc({ result: 'deleted' }, deleted);
          return { applied, duplicate, expired, deleted };
        },
        {
          connection: core.bullRedis,
          prefix: core.keys.bullPrefix(),
          concurrency: core.config.outcomeConcurrency,
          lockDuration: core.config.jobLockMs,
          stalledInterval: core.config.jobLockMs,
          maxStalledCount: 5,
          settings: outcomeWorkerSettings(),
          runRetryDelay: WORKER_RUN_RETRY_MS,
        },
      );
      worker.on('failed', (job, err) => {
        core.metrics.outcomeFailures.inc();
        const last = job !== undefined && job.attemptsMade >= (job.opts.attempts ?? 1);
        if (last) core.log.error({ err, jobId: job.id, attempts: job.attemptsMade }, 'outcome job failed for the last time: its outcomes stay in the failed set, not applied');
        else core.log.warn({ err, jobId: job?.id, attempts: job?.attemptsMade }, 'outcome job failed; it will be retried');
      });
      worker.on('error', (err) => core.log.error({ err }, 'outcome worker error'));
      await worker.waitUntilReady();
      return [worker];
    },
    async close() {
      await queue.close();
    },
  };
}
