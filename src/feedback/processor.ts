import type { Redis } from 'ioredis';
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
  /** TTL of the applied marker; must outlive every possible redelivery and duplicate report. */
  readonly markerTtlSeconds: number;
  /** Cap of every sink list. Default 100,000. */
  readonly sinkCap?: number;
  /** Called after an outcome was applied for the first time. */
  readonly onApplied?: (job: OutcomeJob) => void | Promise<void>;
}

export type ApplyResult = 'applied' | 'duplicate';

/**
 * Applies one outcome job: every arm's statistics and every sink, in one Lua call guarded by the
 * decision's applied-marker. Safe to run any number of times for the same job: counted once.
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
  const keys = [
    deps.keys.pipeline(decision.pipeline, 'applied', decision.id),
    ...arms.flatMap((a) => [a.summary, a.agents]),
    ...sinkEntries.map((e) => e.key),
  ];
  const args: (string | number)[] = [
    deps.markerTtlSeconds,
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
  return 'duplicate';
}
