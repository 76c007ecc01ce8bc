import type { Queue } from 'bullmq';
import type { DecisionRecord, DecisionStore } from '../allocation/decisions.js';
import { AppError } from '../errors/app-error.js';
import type { OutcomeJob } from './queue.js';
import type { OutcomeBody } from './schema.js';

/**
 * Outcome intake: checks the decision exists and the usage names its agents, then puts the job on the
 * `outcomes` queue with the decision id as job id. Answers only after BullMQ has the job in Redis, so a
 * 202 is never lost; a failure to enqueue is a 503 and nothing is accepted.
 */
export class OutcomeIntake {
  constructor(
    private readonly decisions: DecisionStore,
    private readonly queue: Queue<OutcomeJob>,
  ) {}

  async accept(outcome: OutcomeBody): Promise<{ decision: DecisionRecord }> {
    let decision: DecisionRecord | undefined;
    try {
      decision = await this.decisions.read(outcome.decisionId);
    } catch (e) {
      throw new AppError('REDIS_UNAVAILABLE', `decision store unreachable: ${(e as Error).message}`);
    }
    if (!decision) throw new AppError('DECISION_NOT_FOUND', `body/decisionId: no decision "${outcome.decisionId}" (unknown, or its reward window has passed)`);
    for (const agent of Object.keys(outcome.usage ?? {})) {
      if (decision.budgets[agent] === undefined) {
        throw new AppError('UNKNOWN_AGENT', `body/usage/${agent}: decision's pipeline "${decision.pipeline}" has no agent "${agent}"`);
      }
    }
    try {
      await this.queue.add('outcome', { decision, outcome, receivedAt: Date.now() }, { jobId: outcome.decisionId });
    } catch (e) {
      throw new AppError('QUEUE_UNAVAILABLE', `outcome queue unreachable: ${(e as Error).message}`);
    }
    return { decision };
  }
}
