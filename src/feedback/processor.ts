import type { Redis } from 'ioredis';
import { decisionSecond, type DecisionRecord } from '../allocation/decisions.js';
import { bucketField } from '../allocation/record-codec.js';
import type { ControlView } from '../control/view.js';
import type { Keys } from '../redis/keys.js';
import { runScript } from '../redis/scripts.js';
import type { ArmResolver } from './arms.js';
import { observe, outcomeCost } from './observations.js';
import type { OutcomeJob } from './queue.js';

/** A list that receives one entry per applied outcome, in the same atomic step (e.g. a training buffer). */
export interface OutcomeSink {
  /** Returns the list key (in the decision's pipeline slot) and the entry, or undefined to skip. */
  entry(job: OutcomeJob, ctx: { readonly costUsd: number | undefined }): { key: string; value: string } | undefined;
}

export interface OutcomeProcessorDeps {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly view: () => ControlView;
  readonly arms: readonly ArmResolver[];
  readonly sinks?: readonly OutcomeSink[];
  /** The reward window: outcomes are accepted while the decision record lives (its second + window + 1 s). */
  readonly rewardWindowSeconds: number;
  /**
   * How long applied-markers outlive the reward window: the longest an accepted outcome may wait in the queue
   * (retries, stalled workers, an outage) and still be applied. Past it the outcome is refused as `expired`,
   * never counted twice.
   */
  readonly markerGraceSeconds: number;
  /** Cap of every sink list. Default 100,000. */
  readonly sinkCap?: number;
  /** Called after an outcome was applied for the first time. */
  readonly onApplied?: (job: OutcomeJob) => void | Promise<void>;
}

export type ApplyResult = 'applied' | 'duplicate' | 'expired';

/** The epoch second an outcome of this decision stops being applied, and its applied-marker expires. */
export function markerDeadline(decision: Pick<DecisionRecord, 'id' | 'ts'>, rewardWindowSeconds: number, graceSeconds: number): number {
  return (decisionSecond(decision.id) ?? Math.floor(decision.ts / 1000)) + rewardWindowSeconds + 1 + graceSeconds;
}

/**
 * Applies one outcome job: every arm's statistics and every sink, in one Lua call guarded by the
 * decision's applied-marker. Safe to run any number of times for the same job: counted once. A job run after
 * the marker deadline (markerDeadline) is refused as `expired`: its marker may be gone, so applying it could
 * count it twice.
 */
export async function applyOutcome(deps: OutcomeProcessorDeps, job: OutcomeJob): Promise<ApplyResult> {
  const { decision, outcome } = job;
  const pipeline = deps.view().pipelines.get(decision.pipeline);
  const cost = outcomeCost(outcome, pipeline);
  const arms = deps.arms.flatMap((r) => r(decision));
  const sinkEntries = (deps.sinks ?? []).flatMap((s) => {
    const e = s.entry(job, { costUsd: cost });
    return e ? [e] : [];
  });
  // Decisions of one second share one marker set (member: the id's 16 UUID bytes), expiring with the second.
  const sec = decisionSecond(decision.id);
  const keys = [
    deps.keys.pipeline(decision.pipeline, 'applied', sec === undefined ? decision.id : String(sec)),
    ...arms.flatMap((a) => [a.summary, a.agents]),
    ...sinkEntries.map((e) => e.key),
  ];
  const args: (string | number | Buffer)[] = [
    markerDeadline(decision, deps.rewardWindowSeconds, deps.markerGraceSeconds),
    sec === undefined ? '' : bucketField(decision.id),
    outcome.quality,
    cost === undefined ? '' : cost,
    JSON.stringify(observe(decision, outcome)),
    arms.length,
    deps.sinkCap ?? 100_000,
    ...sinkEntries.map((e) => e.value),
  ];
  const res = await runScript<number>(deps.redis, 'applyOutcome', keys, args, true);
  if (res === 1) {
    await deps.onApplied?.(job);
    return 'applied';
  }
  return res === 2 ? 'expired' : 'duplicate';
}
