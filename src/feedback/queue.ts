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
}

/** What an `outcomes` job holds: the outcomes intake accepted together (group commit, see intake.ts). */
export interface OutcomeJobData {
  readonly outcomes: readonly QueuedOutcome[];
}

export function queuedOutcome(job: OutcomeJob): QueuedOutcome {
  return { r: encodeInline(job.decision).toString('base64'), outcome: job.outcome, receivedAt: job.receivedAt };
}

/** The outcomes of a job; one whose record cannot be decoded is left out (it cannot be applied). */
export function outcomesOf(data: OutcomeJobData): readonly OutcomeJob[] {
  const out: OutcomeJob[] = [];
  for (const o of data.outcomes) {
    const decision = decodeInline(o.outcome.decisionId, Buffer.from(o.r, 'base64'));
    if (decision) out.push({ decision, outcome: o.outcome, receivedAt: o.receivedAt });
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

export function createOutcomesQueue(connection: ConnectionOptions, prefix: string, retention: JobRetention = DEFAULT_JOB_RETENTION): Queue<OutcomeJobData> {
  return new Queue<OutcomeJobData>(OUTCOMES_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: {
      attempts: 8,
      backoff: { type: 'exponential', delay: 500 },
      // Finished jobs are kept briefly for inspection, bounded by age and count; duplicates are absorbed by each
      // decision's applied-marker, not by retained jobs.
      removeOnComplete: { age: retention.completedAgeSeconds, count: retention.completedCount },
      removeOnFail: { age: retention.failedAgeSeconds, count: retention.failedCount },
    },
  });
}
