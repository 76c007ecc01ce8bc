import { Queue, type ConnectionOptions } from 'bullmq';
import type { DecisionRecord } from '../allocation/decisions.js';
import type { OutcomeBody } from './schema.js';

export const OUTCOMES_QUEUE = 'outcomes';

/** One accepted outcome. It carries the decision record, so the worker does not depend on the record outliving the queue. */
export interface OutcomeJob {
  readonly decision: DecisionRecord;
  readonly outcome: OutcomeBody;
  readonly receivedAt: number;
}

/**
 * What an `outcomes` job holds: the outcomes intake accepted together (group commit, see intake.ts).
 * Jobs written before batching held a single `OutcomeJob`; the worker still reads those.
 */
export type OutcomeJobData = { readonly outcomes: readonly OutcomeJob[] } | OutcomeJob;

export function outcomesOf(data: OutcomeJobData): readonly OutcomeJob[] {
  return 'outcomes' in data ? data.outcomes : [data];
}

export function createOutcomesQueue(connection: ConnectionOptions, prefix: string): Queue<OutcomeJobData> {
  return new Queue<OutcomeJobData>(OUTCOMES_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: {
      attempts: 8,
      backoff: { type: 'exponential', delay: 500 },
      // Completed jobs are kept an hour for inspection; duplicates are absorbed by each decision's applied-marker.
      removeOnComplete: { age: 3600, count: 100_000 },
      removeOnFail: { age: 7 * 86_400 },
    },
  });
}
