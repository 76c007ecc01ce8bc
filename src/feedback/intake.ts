import type { Queue } from 'bullmq';
import { createHash } from 'node:crypto';
import { type DecisionRecord, type DecisionStore, type OutcomeReceipt } from '../allocation/decisions.js';
import { AppError } from '../errors/app-error.js';
import { withDeadline } from '../redis/deadline.js';
import { GroupCommitter } from '../redis/group-commit.js';
import { certainlyUnwritten, NotSentError } from '../redis/unavailable.js';
import { queuedOutcome, type OutcomeJob, type OutcomeJobData } from './queue.js';
import type { OutcomeBody } from './schema.js';

/** Canonical JSON: object keys sorted, so two equal reports read the same whatever their key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** A report's fingerprint (11 characters: 66 bits of SHA-256 over its canonical JSON): equal reports, equal prints. */
export function outcomeFingerprint(outcome: OutcomeBody): string {
  return createHash('sha256').update(canonical(outcome)).digest('base64url').slice(0, 11);
}

/**
 * Outcome intake: checks the decision exists and the usage names its agents, writes the decision's outcome receipt
 * (first report wins: a different report is OUTCOME_CONFLICT, the same one a retry), then puts the outcome on the
 * `outcomes` queue. Answers only after BullMQ has the job in Redis, so a 202 is never lost; an enqueue that certainly
 * did not reach Redis is QUEUE_UNAVAILABLE (nothing accepted), one whose fate is unknown OUTCOME_UNCONFIRMED (it may
 * have been accepted; a retry of the same report is queued again, and the applied-marker counts it once whether or not
 * the first add landed).
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
      /** The queue connection's status (ioredis `status`): an add is not sent unless it is `ready`. */
      readonly queueStatus?: () => string;
      /**
       * Longest an outcome waits for its decision record, and then for its job to be queued, in ms; past either it is
       * answered 503 (not accepted). With Redis stalled the add may still land later: a retry by the client is then
       * absorbed by the decision's applied-marker. Default: no bound of its own (the connections' command timeout).
       */
      readonly enqueueTimeoutMs?: number;
    },
  ) {
    this.committer = new GroupCommitter<OutcomeJob>(
      async (outcomes) => {
        // A connection that is not ready (closed, reconnecting) would fail the add; refused here, it certainly was not
        // sent (QUEUE_UNAVAILABLE), where the driver's "Connection is closed" also answers commands lost in flight.
        const status = opts.queueStatus?.() ?? 'ready';
        if (status !== 'ready') throw new NotSentError('outcome job', status);
        await queue.add('outcomes', { outcomes: outcomes.map(queuedOutcome) });
        opts.onBatch?.(outcomes.length);
      },
      { maxBatch: opts.batchMax, maxInFlight: opts.maxInFlight ?? 4, ...(opts.enqueueTimeoutMs !== undefined ? { itemTimeoutMs: opts.enqueueTimeoutMs } : {}) },
    );
  }

  /** `visible`: whether the caller may see the decision's pipeline (another tenant's decision answers as unknown). */
  async accept(outcome: OutcomeBody, visible: (pipeline: string) => boolean = () => true): Promise<{ decision: DecisionRecord }> {
    let decision: DecisionRecord | undefined;
    // Redis's time when the read is sent (this host's estimate): a record the read does not find was not written
    // before then.
    const readAt = this.decisions.redisNow();
    try {
      const read = this.decisions.read(outcome.decisionId);
      decision = await (this.opts.enqueueTimeoutMs === undefined ? read : withDeadline(read, this.opts.enqueueTimeoutMs, 'decision read'));
    } catch (e) {
      throw new AppError('REDIS_UNAVAILABLE', `decision store unreachable: ${(e as Error).message}`);
    }
    // A record answered `recorded: false` may still be written until its pending deadline (decisions.ts): until
    // then the answer is DECISION_PENDING (retry); after it, no write of it can land, and DECISION_NOT_FOUND is final.
    if (!decision && this.decisions.mayStillLand(outcome.decisionId, readAt)) {
      throw new AppError('DECISION_PENDING', `body/decisionId: no decision "${outcome.decisionId}" yet; it is seconds old and its record may still be written until its pending deadline: retry`);
    }
    if (!decision || !visible(decision.pipeline)) throw new AppError('DECISION_NOT_FOUND', `body/decisionId: no decision "${outcome.decisionId}" (unknown, or its reward window has passed)`);
    for (const agent of Object.keys(outcome.usage ?? {})) {
      if (!Object.hasOwn(decision.budgets, agent)) {
        throw new AppError('UNKNOWN_AGENT', `body/usage/${agent}: decision's pipeline "${decision.pipeline}" has no agent "${agent}"`);
      }
    }
    // The receipt (beside the record, outcome-receipt.lua): the first report of a decision wins, an identical one is a
    // retry (queued again, absorbed by the applied-marker), a different one is refused; and it tells the learner's
    // default-reward sweep that this decision's reward is on its way (the sweep waits for its job for a bounded
    // watch, then gives the default reward: a job lost after an OUTCOME_UNCONFIRMED never retried leaves no hole).
    let receipt: OutcomeReceipt;
    try {
      const put = this.decisions.receipt(outcome.decisionId, outcomeFingerprint(outcome));
      receipt = await (this.opts.enqueueTimeoutMs === undefined ? put : withDeadline(put, this.opts.enqueueTimeoutMs, 'outcome receipt'));
    } catch (e) {
      if (certainlyUnwritten(e)) throw new AppError('REDIS_UNAVAILABLE', `decision store unreachable: ${(e as Error).message}`);
      throw new AppError('OUTCOME_UNCONFIRMED', `the receipt of the outcome for body/decisionId "${outcome.decisionId}" was not confirmed, it may have been accepted; a retry of the same report is queued again and counted once: ${(e as Error).message}`);
    }
    if (receipt.kind === 'gone') throw new AppError('DECISION_NOT_FOUND', `body/decisionId: no decision "${outcome.decisionId}" (unknown, or its reward window has passed)`);
    if (receipt.kind === 'conflict') {
      throw new AppError('OUTCOME_CONFLICT', `body/decisionId: decision "${outcome.decisionId}" already has a different outcome report; the first one stands`);
    }
    try {
      await this.committer.submit({ decision, outcome, receivedAt: receipt.receivedAt, ...(receipt.learner ? {} : { learner: false }) });
    } catch (e) {
      const msg = (e as Error).message;
      // Certainly not queued: withdraw the receipt this request wrote, so that nothing of the report stays. A retry of
      // an earlier report (`same`) may have been queued by that earlier request, and a receipt that cannot be
      // withdrawn keeps the report's place: both are "may have been accepted".
      if (certainlyUnwritten(e) && receipt.kind === 'new' && (await this.decisions.dropReceipt(outcome.decisionId, receipt).catch(() => false))) {
        throw new AppError('QUEUE_UNAVAILABLE', `outcome queue unreachable: ${msg}`);
      }
      throw new AppError('OUTCOME_UNCONFIRMED', `the outcome for body/decisionId "${outcome.decisionId}" was not confirmed queued, it may have been accepted; a retry of the same report is queued again and counted once: ${msg}`);
    }
    return { decision };
  }
}
