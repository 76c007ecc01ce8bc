import type { Queue } from 'bullmq';
import { decisionSecond, type DecisionRecord, type DecisionStore } from '../allocation/decisions.js';
import { AppError } from '../errors/app-error.js';
import { withDeadline } from '../redis/deadline.js';
import { GroupCommitter } from '../redis/group-commit.js';
import { queuedOutcome, type OutcomeJob, type OutcomeJobData } from './queue.js';
import type { OutcomeBody } from './schema.js';

/**
 * Outcome intake: checks the decision exists and the usage names its agents, then puts the outcome on the
 * `outcomes` queue. Answers only after BullMQ has the job in Redis, so a 202 is never lost; a failure to
 * enqueue is a 503 and nothing is accepted.
 *
 * Outcomes accepted while earlier enqueues are in flight share one job (group commit, up to `batchMax`
 * outcomes a job): a BullMQ add costs far more than the outcome it carries, so under load this is what
 * lets intake keep up. Each outcome is still applied exactly once: the worker's applied-marker per
 * decision, not the job id, is what absorbs duplicates and redeliveries.
 */
export class OutcomeIntake {
  private readonly committer: GroupCommitter<OutcomeJob>;

  constructor(
    private readonly decisions: DecisionStore,
    queue: Queue<OutcomeJobData>,
    private readonly opts: {
      readonly batchMax: number;
      readonly maxInFlight?: number;
      readonly onBatch?: (size: number) => void;
      /**
       * Longest an outcome waits for its decision record, and then for its job to be queued, in ms; past either it is
       * answered 503 (not accepted). With Redis stalled the add may still land later: a retry by the client is then
       * absorbed by the decision's applied-marker. Default: no bound of its own (the connections' command timeout).
       */
      readonly enqueueTimeoutMs?: number;
      /**
       * How long after its second a decision's record may still be in flight, in ms: an outcome for a time-prefixed id
       * this recent whose record is not readable is answered DECISION_PENDING (503, retry), not DECISION_NOT_FOUND. An
       * allocation answers `recorded: false` when its write is not confirmed within the write wait, but the write may
       * still land: its client can then report the outcome by retrying. Default: none (DECISION_NOT_FOUND at once).
       */
      readonly recordInFlightMs?: number;
    },
  ) {
    this.committer = new GroupCommitter<OutcomeJob>(
      async (outcomes) => {
        await queue.add('outcomes', { outcomes: outcomes.map(queuedOutcome) });
        opts.onBatch?.(outcomes.length);
      },
      { maxBatch: opts.batchMax, maxInFlight: opts.maxInFlight ?? 4, ...(opts.enqueueTimeoutMs !== undefined ? { itemTimeoutMs: opts.enqueueTimeoutMs } : {}) },
    );
  }

  /** `visible`: whether the caller may see the decision's pipeline (another tenant's decision answers as unknown). */
  async accept(outcome: OutcomeBody, visible: (pipeline: string) => boolean = () => true): Promise<{ decision: DecisionRecord }> {
    let decision: DecisionRecord | undefined;
    try {
      const read = this.decisions.read(outcome.decisionId);
      decision = await (this.opts.enqueueTimeoutMs === undefined ? read : withDeadline(read, this.opts.enqueueTimeoutMs, 'decision read'));
    } catch (e) {
      throw new AppError('REDIS_UNAVAILABLE', `decision store unreachable: ${(e as Error).message}`);
    }
    if (!decision) {
      const sec = decisionSecond(outcome.decisionId);
      if (sec !== undefined && this.opts.recordInFlightMs !== undefined && Date.now() < (sec + 1) * 1000 + this.opts.recordInFlightMs) {
        throw new AppError('DECISION_PENDING', `body/decisionId: no decision "${outcome.decisionId}" yet; it is seconds old and its record may still be being written: retry`);
      }
    }
    if (!decision || !visible(decision.pipeline)) throw new AppError('DECISION_NOT_FOUND', `body/decisionId: no decision "${outcome.decisionId}" (unknown, or its reward window has passed)`);
    for (const agent of Object.keys(outcome.usage ?? {})) {
      if (!Object.hasOwn(decision.budgets, agent)) {
        throw new AppError('UNKNOWN_AGENT', `body/usage/${agent}: decision's pipeline "${decision.pipeline}" has no agent "${agent}"`);
      }
    }
    try {
      await this.committer.submit({ decision, outcome, receivedAt: Date.now() });
    } catch (e) {
      throw new AppError('QUEUE_UNAVAILABLE', `outcome queue unreachable: ${(e as Error).message}`);
    }
    return { decision };
  }
}
