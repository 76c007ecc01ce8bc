import { Queue, type ConnectionOptions } from 'bullmq';
import type { DecisionRecord } from '../allocation/decisions.js';
import type { OutcomeBody } from './schema.js';

export const OUTCOMES_QUEUE = 'outcomes';

/** The job carries the decision record, so the worker does not depend on the record outliving the queue. */
export interface OutcomeJob {
  readonly decision: DecisionRecord;
  readonly outcome: OutcomeBody;
  readonly receivedAt: number;
}

export function createOutcomesQueue(connection: ConnectionOptions, prefix: string): Queue<OutcomeJob> {
  return new Queue<OutcomeJob>(OUTCOMES_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: {
      attempts: 8,
      backoff: { type: 'exponential', delay: 500 },
      // Completed jobs are kept an hour: a duplicate report in that time is absorbed by the job id;
      // after it, by the applied-marker in Redis.
      removeOnComplete: { age: 3600, count: 100_000 },
      removeOnFail: { age: 7 * 86_400 },
    },
  });
}
