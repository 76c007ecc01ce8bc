import { Queue, type ConnectionOptions } from 'bullmq';
import { decodeInline, encodeInline } from '../allocation/record-codec.js';
import type { OutcomeBody, OutcomeJob } from '../kernel/outcome.js';

export const OUTCOMES_QUEUE = 'outcomes';

/** One accepted outcome, with its decision record, as the worker applies it (src/kernel/outcome.ts). */
export type { OutcomeJob } from '../kernel/outcome.js';

/**
 * One accepted outcome as it is queued: the decision record in its compact self-contained form (base64 of
 * src/allocation/record-codec.ts's form 2, about a third of its JSON), so the worker does not depend on the
 * record outliving the queue, and a retained job holds no full record.
 */
export interface QueuedOutcome {
  readonly r: string;
  readonly outcome: OutcomeBody;
  readonly receivedAt: number;
  /** 0 when the outcome is not its decision's learner event (OutcomeJob.learner); absent otherwise. */
  readonly l?: 0;
}

/** What an `outcomes` job holds: the outcomes intake accepted together (group commit, see intake.ts). */
export interface OutcomeJobData {
  readonly outcomes: readonly QueuedOutcome[];
}

export function queuedOutcome(job: OutcomeJob): QueuedOutcome {
  return { r: encodeInline(job.decision).toString('base64'), outcome: job.outcome, receivedAt: job.receivedAt, ...(job.learner === false ? { l: 0 as const } : {}) };
}

/** The outcomes of a job; one whose record cannot be decoded is left out (it cannot be applied). */
export function outcomesOf(data: OutcomeJobData): readonly OutcomeJob[] {
  const out: OutcomeJob[] = [];
  for (const o of data.outcomes) {
    const decision = decodeInline(o.outcome.decisionId, Buffer.from(o.r, 'base64'));
    if (decision) out.push({ decision, outcome: o.outcome, receivedAt: o.receivedAt, ...(o.l === 0 ? { learner: false } : {}) });
  }
  return out;
}

/** How long finished outcome jobs are kept (age in seconds and count, whichever bound is hit first). */
export interface JobRetention {
  readonly completedAgeSeconds: number;
  readonly completedCount: number;
  readonly failedAgeSeconds: number;
  readonly failedCount: number;
}

export const DEFAULT_JOB_RETENTION: JobRetention = { completedAgeSeconds: 600, completedCount: 1000, failedAgeSeconds: 7 * 86_400, failedCount: 10_000 };

/**
 * An outcome job's retry schedule. A job that fails (the worker's Redis commands timed out, the node holding the
 * pipeline's keys is unreachable) is retried after 500 ms, doubling per failure up to `capMs`, for as long as its
 * outcomes can still be applied: the reward window plus the applied-markers' grace (processor.ts markerGraceSeconds,
 * "the longest an accepted outcome may wait in the queue"), after which the worker answers them `expired` and the job
 * completes. Until 2026-12-03 a job gave up after 8 attempts, 63.5 s of retries in all, and an outcome accepted with
 * 202 stayed in BullMQ's failed set, never applied.
 */
export const OUTCOME_BACKOFF = 'outcome';
export const OUTCOME_BACKOFF_CAP_MS = 30_000;

/** The delay before retry `attemptsMade` + 1 (BullMQ passes the attempts made so far, from 1). */
export function outcomeRetryDelay(attemptsMade: number, capMs: number = OUTCOME_BACKOFF_CAP_MS): number {
  return Math.min(capMs, 500 * 2 ** Math.min(30, Math.max(0, attemptsMade - 1)));
}

/** Attempts (the first run included) whose retry delays add up to at least `spanMs`. */
export function outcomeAttempts(spanMs: number, capMs: number = OUTCOME_BACKOFF_CAP_MS): number {
  let waited = 0;
  let attempts = 1;
  while (waited < spanMs) waited += outcomeRetryDelay(attempts++, capMs);
  return attempts;
}

/** The worker settings that give the `outcome` backoff its schedule (every outcome worker must use them). */
export function outcomeWorkerSettings(capMs: number = OUTCOME_BACKOFF_CAP_MS): { backoffStrategy: (attemptsMade: number) => number } {
  return { backoffStrategy: (attemptsMade: number) => outcomeRetryDelay(attemptsMade, capMs) };
}

/** Default retry span: the default reward window (1 day) plus the default marker grace (6 h). */
export const DEFAULT_RETRY_SPAN_MS = (86_400 + 21_600) * 1000;

export function createOutcomesQueue(connection: ConnectionOptions, prefix: string, retention: JobRetention = DEFAULT_JOB_RETENTION, retry: { readonly spanMs: number; readonly capMs?: number } = { spanMs: DEFAULT_RETRY_SPAN_MS }): Queue<OutcomeJobData> {
  return new Queue<OutcomeJobData>(OUTCOMES_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: {
      attempts: outcomeAttempts(retry.spanMs, retry.capMs),
      backoff: { type: OUTCOME_BACKOFF },
      // Finished jobs are kept briefly for inspection, bounded by age and count; duplicates are absorbed by each
      // decision's applied-marker, not by retained jobs.
      removeOnComplete: { age: retention.completedAgeSeconds, count: retention.completedCount },
      removeOnFail: { age: retention.failedAgeSeconds, count: retention.failedCount },
    },
  });
}
