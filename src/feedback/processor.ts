import type { Redis } from 'ioredis';
import { decisionSecond, type DecisionRecord } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import type { Keys } from '../redis/keys.js';
import { callScript, type ScriptReply } from '../redis/scripts.js';
import type { ArmResolver, OutcomeSink } from '../kernel/extension-points.js';
import { pipelineTombstone } from '../pipelines/tombstone.js';
import { observe } from './observations.js';
import { outcomeCostIn } from './outcome-cost.js';
import { unitArg, unitSpec } from './units.js';
import type { OutcomeJob } from '../kernel/outcome.js';

/** Outcome sinks are an extension point (src/kernel/extension-points.ts). */
export type { OutcomeSink } from '../kernel/extension-points.js';

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

/** What apply-outcome.lua answered, as its reply decoder reads it (src/redis/scripts.ts). */
export type ApplyResult = ScriptReply<'applyOutcome'>;

/** Marker sets per pipeline and second; a decision's set is picked by 3 random bits of its id. */
export const MARKER_SETS_PER_SECOND = 8;

const CANONICAL_ID = /^[0-9a-z]{6,7}-([0-9a-f]{8})-([0-9a-f]{4})-4([0-9a-f]{3})-[89ab]([0-9a-f])([0-9a-f]{2})-[0-9a-f]{12}$/;

/**
 * Where a decision's applied-marker lives: for ids made of a time prefix and a random UUID, an integer member (60
 * random bits of the UUID, in decimal) of one of MARKER_SETS_PER_SECOND sets of its pipeline and second
 * (`applied:<second>:<k>`). Integer members keep a set in Redis's intset encoding, 8 bytes a member, up to
 * `set-max-intset-entries` (512) members, i.e. 4,096 outcomes per second and pipeline; beyond that a set is an
 * ordinary hash set (still correct, ~70 bytes a member). Two decisions of one set sharing 60 bits would make the
 * second look applied: at 1,000 decisions/s that is expected once in about 10^5 years. Other id forms with a time
 * prefix (a client's own decisionId): the id itself in the set of their second (k = 0).
 *
 * Every decision id has a time prefix: the server makes its own (newDecisionId), a client's decisionId without one
 * is refused at allocation (VALIDATION_FAILED), an SDK's local-mode record without one is refused at ingest
 * (/v1/decisions/batch), and outcome intake finds no record for such an id (DECISION_NOT_FOUND), so no outcome job
 * carries one. An id without a time prefix here is a bug: it throws.
 */
export function appliedMarker(keys: Keys, pipeline: string, decisionId: string): { key: string; member: string } {
  const sec = secondOf(decisionId);
  const m = CANONICAL_ID.exec(decisionId);
  if (!m) return { key: keys.pipeline(pipeline, 'applied', String(sec), '0'), member: decisionId };
  const k = parseInt(m[4]!, 16) % MARKER_SETS_PER_SECOND;
  return { key: keys.pipeline(pipeline, 'applied', String(sec), String(k)), member: BigInt(`0x${m[1]}${m[2]}${m[3]}`).toString() };
}

/** Whether the outcome of a decision was applied (its marker is set and has not expired). */
export async function isApplied(redis: Redis, keys: Keys, pipeline: string, decisionId: string): Promise<boolean> {
  const { key, member } = appliedMarker(keys, pipeline, decisionId);
  return (await redis.sismember(key, member)) === 1;
}

/** The epoch second an outcome of this decision stops being applied, and its applied-marker expires. */
export function markerDeadline(decision: Pick<DecisionRecord, 'id'>, rewardWindowSeconds: number, graceSeconds: number): number {
  return secondOf(decision.id) + rewardWindowSeconds + 1 + graceSeconds;
}

/** The second of a decision id; throws for one without a time prefix, which no decision record has (see appliedMarker). */
function secondOf(decisionId: string): number {
  const sec = decisionSecond(decisionId);
  if (sec === undefined) throw new Error(`decision id "${decisionId}" has no time prefix: no decision record has one`);
  return sec;
}

/**
 * Applies one outcome job: every arm's statistics and every sink, in one Lua call guarded by the
 * decision's applied-marker. Safe to run any number of times for the same job: counted once. A job run after
 * the marker deadline (markerDeadline) is refused as `expired`: its marker may be gone, so applying it could
 * count it twice. An outcome of a decision whose pipeline was deleted since (its tombstone, pipelineTombstone) is
 * `deleted`: nothing is written; an arm whose object was deleted since (Arm.retired) is left alone.
 */
export async function applyOutcome(deps: OutcomeProcessorDeps, job: OutcomeJob): Promise<ApplyResult> {
  const { decision, outcome } = job;
  const cost = outcomeCostIn(deps.view(), outcome, decision);
  const arms = deps.arms.flatMap((r) => r(decision));
  const sinkEntries = (deps.sinks ?? []).flatMap((s) => {
    const e = s.entry(job, { costUsd: cost });
    return e ? [e] : [];
  });
  const marker = appliedMarker(deps.keys, decision.pipeline, decision.id);
  // Unit statistics need the decision's unit key (experiments route only decisions that have one).
  const unit = decision.unitKey !== undefined && arms.some((a) => a.units) ? unitArg(unitSpec(decision.unitKey)) : '';
  const keys = [
    marker.key,
    pipelineTombstone(deps.keys, decision.pipeline),
    ...arms.flatMap((a) => [a.summary, a.agents, a.retired?.key ?? a.summary, a.units?.bitmap ?? a.summary, a.units?.buckets ?? a.summary]),
    ...sinkEntries.map((e) => e.key),
  ];
  const args: (string | number | Buffer)[] = [
    markerDeadline(decision, deps.rewardWindowSeconds, deps.markerGraceSeconds),
    marker.member,
    outcome.quality,
    cost === undefined ? '' : cost,
    JSON.stringify(observe(decision, outcome)),
    arms.length,
    deps.sinkCap ?? 100_000,
    decision.pipelineVersion,
    ...arms.map((a) => a.retired?.version ?? ''),
    ...arms.map((a) => (a.units ? '1' : '')),
    unit,
    ...sinkEntries.map((e) => e.value),
  ];
  const res = await callScript(deps.redis, 'applyOutcome', keys, args);
  if (res === 'applied') await deps.onApplied?.(job);
  return res;
}
