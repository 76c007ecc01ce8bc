import { Type } from '@sinclair/typebox';
import type { Services } from '../kernel/module.js';
import { jsonDecoder } from '../redis/decode.js';
import { controlShareOf, controlStrategyDef } from './control-arm.js';
import { decodeEvent, rewardOf, type LoggedEvent } from './events.js';
import {
  accumulate,
  adaptiveControlShare,
  probationShareOf,
  addCandidateEvidence,
  addSafeStartReward,
  EMPTY_SAFE_START,
  SAFE_START_MARGIN_DEFAULT,
  safeStartAlpha,
  safeStartCostVerdict,
  safeStartStep,
  type SafeStartCheckVerdict,
  type SafeStartCostVerdict,
  type SafeStartEvidence,
  type SafeStartState,
  backoffUnit,
  candidateAfter,
  candidateArmOf,
  candidateVerdict,
  EMPTY_CANDIDATE_EVIDENCE,
  EMPTY_EVIDENCE,
  GUARD_DEFAULTS,
  guardVerdict,
  judge,
  NEW_RUN,
  revertTarget,
  type CandidateEvidence,
  type CandidateRefusal,
  type CandidateVerdict,
  type GuardEvidence,
  type GuardRevert,
  type GuardRun,
  type GuardVerdict,
} from './guard.js';
import { servingModel, trainEveryOf, type LearnedParams } from './kind.js';
import { SAFE_START_MIN_SCALE } from './policy.js';
import { learnsTiers } from '@apportion/sdk/engine';
import { learnerKeys } from './keys.js';
import { unfitFor, type ModelRegistry, type ModelSummary } from './registry.js';
import type { Pipeline } from '../pipelines/schema.js';
import { learnedStrategies } from './learned-strategies.js';

/** Buffer entries read per page, and at most this many per check (the first check of a version reads back this far). */
const PAGE = 500;
const MAX_SCAN = 20_000;

export interface GuardCheck {
  readonly pipeline: string;
  readonly version: number;
  readonly verdict: GuardVerdict;
  /** Set when this check reverted the version. */
  readonly revert?: GuardRevert;
}

/** The candidate arm's check (guard.ts candidateVerdict) of the pending candidate version. */
export interface CandidateCheck {
  readonly pipeline: string;
  readonly candidate: number;
  readonly verdict: CandidateVerdict;
  /** Set when this check refused the candidate. */
  readonly refusal?: CandidateRefusal;
}

/** The safe start's check (guard.ts safeStartVerdict): the scale after it, and the new state when this check shrank it. */
export interface SafeStartCheck {
  readonly pipeline: string;
  readonly scale: number;
  /** The control test's verdict (learned traffic − control arm). */
  readonly verdict: GuardVerdict;
  /** The cost test's verdict (guard.ts safeStartCostVerdict), when the strategy runs it. */
  readonly cost?: SafeStartCostVerdict;
  readonly shrunk?: SafeStartState;
}

/**
 * The safe start's test as of its latest tick (listed as `guard.safeStart.current` in GET /v1/models/:pipeline while
 * no trained version serves, before any shrink too): the learned traffic's and the control arm's realised rewards since
 * `since` (epoch ms) at the current scale, their difference and its always-valid interval (at the level `alpha` this
 * test runs at: safeStartAlpha), and the verdict.
 */
export interface SafeStartComparison {
  readonly at: number;
  readonly since: number;
  readonly scale: number;
  readonly status: 'insufficient' | 'ok' | 'worse';
  readonly learned: { readonly n: number; readonly mean: number };
  readonly control: { readonly n: number; readonly mean: number; readonly strategy: string };
  readonly diff: number | null;
  readonly ci: readonly [number, number] | null;
  readonly alpha: number;
  /**
   * The cost test (guard.ts safeStartCostVerdict; absent while explore-first explores): the exploration's shortfall per
   * decision against the default split (`cost`, its interval `ci`), the share of learned decisions that served a
   * perturbation, the margin (null: reported only, the test does not act; its interval is then at the safe start's
   * level against 0), and the two groups it compares. While the test acts, `alpha` above is each test's level (half the
   * safe start's).
   */
  readonly cost?: {
    readonly status: 'insufficient' | 'ok' | 'worse';
    readonly cost: number | null;
    readonly ci: readonly [number, number] | null;
    readonly share: number;
    /** The strategy's safeStartMargin; null: the estimate is reported only (against 0), the test does not act. */
    readonly margin: number | null;
    readonly away: { readonly n: number; readonly mean: number };
    readonly atDefault: { readonly n: number; readonly mean: number };
  };
}

/** The safe start's running evidence, for the scale (and shrink count, and guard segment) it was gathered at, from `since` (epoch ms). */
interface SafeStoredState {
  readonly scale: number;
  readonly shrinks: number;
  readonly segment: number;
  readonly since: number;
  readonly marker: string;
  readonly evidence: SafeStartEvidence;
  /** The comparison at the latest tick (absent in states written before it was kept). */
  readonly latest?: SafeStartComparison;
}

interface CandidateState {
  readonly version: number;
  readonly marker: string;
  readonly evidence: CandidateEvidence;
}

interface State {
  readonly since: number;
  readonly marker: string;
  /** Sub-segment index (1-based) within the segment, its evidence and the segment's (guard.ts GuardRun). */
  readonly j: number;
  readonly evidence: GuardEvidence;
  readonly total: GuardEvidence;
}

const ArmSums = Type.Object({ n: Type.Number(), sum: Type.Number(), sumSq: Type.Number(), raw: Type.Optional(Type.Number()) });
const Evidence = Type.Object({ learned: ArmSums, control: ArmSums, byVersion: Type.Record(Type.String(), Type.Object({ learned: ArmSums, control: ArmSums })) });
/**
 * The stored state (typed by State, with `total` allowed to be absent: the segment's totals then start empty).
 * A state that is not JSON or not of this shape is read as no state: the guard starts a new run, as it did for
 * unreadable JSON.
 */
const decodeCandidateState: (text: string) => CandidateState | undefined = jsonDecoder(
  Type.Object({ version: Type.Number(), marker: Type.String(), evidence: Type.Object({ candidate: ArmSums, control: ArmSums, serving: ArmSums }) }),
);
const Arm = Type.Object({ n: Type.Number(), mean: Type.Number() });
const SafeStartComparisonSchema = Type.Object({
  at: Type.Number(),
  since: Type.Number(),
  scale: Type.Number(),
  status: Type.Union([Type.Literal('insufficient'), Type.Literal('ok'), Type.Literal('worse')]),
  learned: Arm,
  control: Type.Object({ n: Type.Number(), mean: Type.Number(), strategy: Type.String() }),
  diff: Type.Union([Type.Number(), Type.Null()]),
  ci: Type.Union([Type.Tuple([Type.Number(), Type.Number()]), Type.Null()]),
  alpha: Type.Number(),
  cost: Type.Optional(
    Type.Object({
      status: Type.Union([Type.Literal('insufficient'), Type.Literal('ok'), Type.Literal('worse')]),
      cost: Type.Union([Type.Number(), Type.Null()]),
      ci: Type.Union([Type.Tuple([Type.Number(), Type.Number()]), Type.Null()]),
      share: Type.Number(),
      margin: Type.Union([Type.Number(), Type.Null()]),
      away: Arm,
      atDefault: Arm,
    }),
  ),
});
const decodeSafeStartState: (text: string) => SafeStoredState | undefined = jsonDecoder(
  Type.Object({
    scale: Type.Number(),
    shrinks: Type.Number(),
    segment: Type.Number(),
    since: Type.Number(),
    marker: Type.String(),
    evidence: Type.Object({ learned: ArmSums, control: ArmSums, cost: Type.Optional(Type.Object({ atDefault: ArmSums, away: ArmSums, learnedN: Type.Number() })) }),
    latest: Type.Optional(SafeStartComparisonSchema),
  }),
);

/** Where the guard keeps the serving version's running evidence (one key per pipeline). */
export function guardKey(keys: Services<'keys'>['keys'], pipeline: string): string {
  return keys.pipeline(pipeline, 'learner', 'guard');
}

/** Where the guard keeps the safe start's running evidence (one key per pipeline). */
export function safeStartKey(keys: Services<'keys'>['keys'], pipeline: string): string {
  return keys.pipeline(pipeline, 'learner', 'guard-safe-start');
}

/**
 * The safe start's running comparison as of the guard's latest tick, if it is of the safe start the models document
 * describes now (the same scale, shrink count and guard segment; a stale one — before a shrink, a revert or an
 * activation — is not listed).
 */
export async function safeStartComparison(core: Services<'redis' | 'keys'>, pipeline: string, doc: { readonly guard?: { readonly since?: number; readonly safeStart?: { readonly scale: number; readonly shrinks: number } } } | undefined): Promise<SafeStartComparison | undefined> {
  const json = await core.redis.get(safeStartKey(core.keys, pipeline));
  const st = json ? decodeSafeStartState(json) : undefined;
  if (!st?.latest) return undefined;
  const current = doc?.guard?.safeStart ?? { scale: 1, shrinks: 0 };
  if (st.scale !== current.scale || st.shrinks !== current.shrinks || st.segment !== (doc?.guard?.since ?? 0)) return undefined;
  return st.latest;
}
const decodeState: (text: string) => (Omit<State, 'total'> & { readonly total?: GuardEvidence }) | undefined = jsonDecoder(
  Type.Object({ since: Type.Number(), marker: Type.String(), j: Type.Number(), evidence: Evidence, total: Type.Optional(Evidence) }),
);

/** The serving version's guard test as it stands (GET /v1/models/:pipeline `runtimeGuard`). */
export interface ServingGuardStatus {
  /** The version the guard's evidence is of (the serving one when the evidence is current). */
  readonly version: number;
  /** Start of the guard's segment (epoch ms): its start, its last revert or a manual activation. */
  readonly since: number;
  /** The cumulative test over the segment (what a persistent shortfall shows in): status, learned − control, its always-valid interval. */
  readonly verdict: GuardVerdict;
  /** Its level (α/2 of guardAlpha: the other half is the sub-segment tests'). */
  readonly alpha: number;
}

/**
 * The serving version's runtime-guard test as the worker's last tick left it (read-only; any process). Undefined
 * while no trained version serves or before the guard's first tick of this segment.
 */
export async function readServingGuard(
  core: Services<'redis' | 'keys'>,
  pipelineId: string,
  active: number,
  since: number,
  params: Pick<LearnedParams, 'guardAlpha' | 'guardMargin'>,
): Promise<ServingGuardStatus | undefined> {
  if (active <= 0) return undefined;
  const json = await core.redis.get(guardKey(core.keys, pipelineId));
  const s = json ? decodeState(json) : undefined;
  if (!s || s.since !== since) return undefined;
  const alpha = (params.guardAlpha ?? GUARD_DEFAULTS.alpha) / 2;
  const total = s.total ?? EMPTY_EVIDENCE;
  return { version: active, since, alpha, verdict: guardVerdict(total.learned, total.control, { alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin }) };
}

/**
 * The runtime guard's loop (runs in the worker's learner tick, after ingest): sums the realised rewards of
 * the learned and control arms of the learned strategies' decisions made since the guard's segment began
 * (guard.ts GuardEvidence), from the training buffer's new entries (outcomes and default rewards alike), and
 * reverts the serving version when guard.ts says the learned arm is worse. State per pipeline in one key of
 * its slot. Checks of one pipeline must not run concurrently (the tick job runs one at a time).
 */
export class GuardMonitor {
  constructor(
    private readonly core: Services<'redis' | 'keys' | 'view' | 'metrics' | 'log'>,
    private readonly registry: ModelRegistry,
  ) {}

  private key(pipeline: string): string {
    return guardKey(this.core.keys, pipeline);
  }

  private candidateKey(pipeline: string): string {
    return this.core.keys.pipeline(pipeline, 'learner', 'guard-candidate');
  }

  /** The buffer's events newer than `marker`, newest first (at most MAX_SCAN). */
  private async freshEvents(pipelineId: string, marker: string): Promise<LoggedEvent[]> {
    const buffer = learnerKeys(this.core.keys, pipelineId).buffer;
    const fresh: LoggedEvent[] = [];
    for (let off = 0; off < MAX_SCAN; off += PAGE) {
      const page = await this.core.redis.lrange(buffer, off, off + PAGE - 1);
      for (const raw of page) {
        const e = decodeEvent(raw);
        if (!e) continue; // not an event (corrupted in Redis): it counts for no arm
        if (e.id === marker) return fresh;
        fresh.push(e);
      }
      if (page.length < PAGE) break;
    }
    return fresh;
  }

  /**
   * The candidate arm (guard.ts candidateVerdict): the realised rewards of the decisions whose candidate-share draw
   * served the pending candidate's split, since it was proposed, against the control arm's and the rest's. Worse:
   * the candidate is refused at once (it stops being mixed in; its gate record says `refused` with the guard's
   * interval). Runs during the safe start too. Undefined when no candidate is pending.
   */
  async checkCandidate(pipelineId: string): Promise<CandidateCheck | undefined> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline) return undefined;
    const strategies = learnedStrategies(view, pipeline);
    const first = strategies[0];
    const doc = this.registry.doc(pipelineId);
    const pending = doc?.candidate;
    if (!first || !pending || servingModel(view, pipeline).candidate?.version !== pending.version) return undefined;
    const params = first.params as LearnedParams;
    if (params.guardCandidate === false || params.controlShare === 0) return undefined;
    const learnedIds = new Set(strategies.map((s) => s.id));
    const costWeight = params.costWeight ?? 0;
    const since = pending.proposedAt ?? pending.createdAt;

    const json = await this.core.redis.get(this.candidateKey(pipelineId));
    const stored = json ? decodeCandidateState(json) : undefined;
    const st: CandidateState = stored && stored.version === pending.version ? stored : { version: pending.version, marker: '', evidence: EMPTY_CANDIDATE_EVIDENCE };
    const fresh = await this.freshEvents(pipelineId, st.marker);
    let evidence = st.evidence;
    for (const e of fresh) {
      if (e.t < since || !learnedIds.has(e.s)) continue;
      const arm = candidateArmOf(e, pending.version);
      if (arm) evidence = addCandidateEvidence(evidence, arm, rewardOf(e, costWeight), e.z ?? 0);
    }
    const verdict = candidateVerdict(evidence, { alpha: params.guardAlpha ?? GUARD_DEFAULTS.alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin });
    await this.core.redis.set(this.candidateKey(pipelineId), JSON.stringify({ version: pending.version, marker: fresh[0]?.id ?? st.marker, evidence }));
    if (verdict.status !== 'worse') return { pipeline: pipelineId, candidate: pending.version, verdict };

    const refusal: CandidateRefusal = {
      reason: 'guard',
      at: Date.now(),
      against: verdict.against,
      diff: verdict.diff!,
      ci: verdict.ci!,
      candidate: verdict.learned,
      reference: { ...verdict.control, ...(verdict.against === 'default' ? { strategy: controlStrategyDef(view, pipeline).id } : {}) },
    };
    const ref = verdict.against === 'default' ? `the control strategy ${refusal.reference.strategy}` : 'the rest of the learned strategy’s decisions';
    const fmt = (x: number) => x.toFixed(4);
    // Only if it is still the pending candidate (the gate may have judged it meanwhile).
    if (this.registry.doc(pipelineId)?.candidate?.version !== pending.version) return { pipeline: pipelineId, candidate: pending.version, verdict };
    await this.registry.recordGate(pipelineId, pending.version, {
      status: 'refused',
      reason: `refused by the runtime guard: the candidate arm's realised reward is below ${ref}'s (diff ${fmt(refusal.diff)}, always-valid interval [${fmt(refusal.ci[0])}, ${fmt(refusal.ci[1])}], ${refusal.candidate.n} vs ${refusal.reference.n} outcomes)`,
      events: evidence.candidate.n + evidence.control.n + evidence.serving.n,
      comparisons: [],
      decidedAt: refusal.at,
      guard: refusal,
    });
    // The next candidate waits (training.ts candidateBackoff): trainEvery × 2^k outcomes after the k-th refusal in a row
    // (the guard's, and the gate's that showed harm: training.ts gateCandidate).
    const lk = learnerKeys(this.core.keys, pipelineId);
    const [guardK, gateK, outcomes, gap] = ((await this.core.redis.multi().hincrby(lk.counters, 'guardRefusals', 1).hget(lk.counters, 'gateRefusals').hget(lk.counters, 'outcomes').hget(lk.counters, 'trainGap').exec()) ?? []).map((r) => Number(r?.[1] ?? 0));
    const k = guardK! + gateK!;
    // In retrain intervals as retrains really run: trainEvery, or fewer outcomes when retrains come by time or on request
    // (a pipeline retrained every hour with trainEvery 1,000,000 would otherwise never train again after one refusal).
    await this.core.redis.hset(lk.counters, 'candidateAfter', candidateAfter(outcomes!, k, backoffUnit(trainEveryOf(params, pipeline), gap!)));
    this.core.metrics.learnerGuardReverts.inc({ reason: 'candidate', to: 'refused' });
    this.core.log.warn({ pipeline: pipelineId, version: pending.version, ...refusal }, `learner guard: candidate version ${pending.version} is worse than ${ref}; refused (no longer mixed in)`);
    await this.core.redis.del(this.candidateKey(pipelineId));
    return { pipeline: pipelineId, candidate: pending.version, verdict, refusal };
  }

  async check(pipelineId: string): Promise<GuardCheck | undefined> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline) return undefined;
    const strategies = learnedStrategies(view, pipeline);
    const first = strategies[0];
    if (!first) return undefined;
    const params = first.params as LearnedParams;
    const doc = this.registry.doc(pipelineId);
    const active = doc?.active ?? 0;
    // Version 0 is not a trained model (the prior, or the control after a revert to it): the safe start's traffic is judged instead.
    if (!doc || active === 0 || servingModel(view, pipeline).version !== active) {
      await this.checkSafeStart(pipelineId);
      return undefined;
    }
    const learnedIds = new Set(strategies.map((s) => s.id));
    const costWeight = params.costWeight ?? 0;

    const since = doc.guard?.since ?? 0;
    let st = await this.load(pipelineId);
    if (st.since !== since) st = { since, marker: '', ...NEW_RUN };
    const buffer = learnerKeys(this.core.keys, pipelineId).buffer;
    const fresh: LoggedEvent[] = [];
    scan: for (let off = 0; off < MAX_SCAN; off += PAGE) {
      const page = await this.core.redis.lrange(buffer, off, off + PAGE - 1);
      for (const raw of page) {
        const e = decodeEvent(raw);
        if (!e) continue; // not an event (corrupted in Redis): it counts for neither arm
        if (e.id === st.marker) break scan;
        fresh.push(e);
      }
      if (page.length < PAGE) break;
    }
    const newest = fresh[0]?.id ?? st.marker;
    let run: GuardRun = { j: st.j, evidence: st.evidence, total: st.total ?? EMPTY_EVIDENCE };
    const segment = params.guardSegmentOutcomes ?? GUARD_DEFAULTS.segmentOutcomes;
    // Oldest first (the buffer is newest first).
    for (let i = fresh.length - 1; i >= 0; i--) {
      const e = fresh[i]!;
      // Decisions of trained versions, made since the segment began, by a learned strategy with a control arm.
      if (!e.m || e.a === undefined || e.t < since || !learnedIds.has(e.s)) continue;
      run = accumulate(run, e.m, e.a, rewardOf(e, costWeight), segment, e.z ?? 0);
    }
    const evidence = run.total;
    const verdict = judge(run, { alpha: params.guardAlpha ?? GUARD_DEFAULTS.alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin });
    await this.save(pipelineId, { since, marker: newest, ...run });
    if (verdict.status !== 'worse') {
      // The control arm's share for the next decisions (guard.ts adaptiveControlShare): raised while the serving
      // version is on probation (it has not yet shown it is no worse than the control by more than probationMargin),
      // lower while it leads the control clearly, the strategy's own otherwise. Written to the models document (synced
      // to every process and SDK) only when its level changes.
      const base = controlShareOf(params.controlShare);
      const share = adaptiveControlShare(base, run.total, { min: params.controlShareMin, margin: params.controlShareMargin, max: probationShareOf(params.probationShare, learnsTiers(pipeline)), probation: params.probationMargin });
      const next = share !== base ? share : undefined;
      if (next !== doc.guard?.controlShare && (await this.registry.setControlShare(pipelineId, active, since, next))) {
        this.core.log.info({ pipeline: pipelineId, version: active, controlShare: next ?? base, diff: verdict.diff, learned: verdict.learned.n, control: verdict.control.n }, `learner guard: control share ${next ?? base} (version ${active} against the control strategy: diff ${verdict.diff?.toFixed(4)})`);
      }
      return { pipeline: pipelineId, version: active, verdict };
    }

    // Revert (guard.ts revertTarget): one step back to an earlier version that can serve the pipeline as it is now
    // (registry.ts unfitFor: its features, agents, kind and, with model tiers, candidate models — a version fitted
    // for models the pipeline no longer declares would be refused by serving, leaving the revert ineffective) and
    // did not do worse itself, else (and always on a second revert) to the control strategy.
    const signature = servingModel(view, pipeline).encoder.signature;
    const steppedBack = doc.guard?.steppedBack === true;
    const fitting = steppedBack ? [] : await this.servable(pipelineId, pipeline, signature, doc.versions.filter((v) => v.version < active && v.activatedAt !== undefined && v.reverted === undefined));
    const to = revertTarget(fitting, active, evidence, steppedBack);
    const record: GuardRevert = {
      reason: 'guard',
      from: active,
      to,
      at: Date.now(),
      diff: verdict.diff!,
      ci: verdict.ci!,
      learned: verdict.learned,
      control: { ...verdict.control, strategy: controlStrategyDef(view, pipeline).id },
    };
    const outcomes = Number((await this.core.redis.hget(learnerKeys(this.core.keys, pipelineId).counters, 'outcomes')) ?? 0);
    const done = await this.registry.revert(pipelineId, record, outcomes + (params.guardHoldOutcomes ?? GUARD_DEFAULTS.holdOutcomes));
    if (!done) return { pipeline: pipelineId, version: active, verdict };
    this.core.metrics.learnerGuardReverts.inc({ reason: 'guard', to: to > 0 ? 'version' : 'control' });
    this.core.log.warn({ pipeline: pipelineId, ...record }, `learner guard: model ${active} is worse than the control strategy; reverted to ${to > 0 ? `version ${to}` : 'the control strategy'}`);
    await this.core.redis.del(this.key(pipelineId));
    return { pipeline: pipelineId, version: active, verdict, revert: record };
  }

  /**
   * The listed versions that can serve the pipeline as it is now (registry.ts unfitFor), read from the registry (the
   * listing does not carry a tier version's candidate models); a version no longer readable (pruned, its file gone) is
   * left out, since the revert could not serve it.
   */
  private async servable<V extends ModelSummary>(pipelineId: string, pipeline: Pipeline, signature: string, listed: readonly V[]): Promise<V[]> {
    const out: V[] = [];
    for (const v of listed) {
      if (v.signature !== signature) continue;
      const mv = await this.registry.get(pipelineId, v.version);
      if (mv && unfitFor(mv, pipeline, signature) === undefined) out.push(v);
    }
    return out;
  }

  private safeStartKey(pipeline: string): string {
    return safeStartKey(this.core.keys, pipeline);
  }

  /**
   * The safe start's learned traffic as a whole (guard.ts safeStartVerdict): while no trained version serves, the
   * realised rewards of the learned strategy's decisions (m = 0: the default strategy explored around, the pending
   * candidate mixed in) against its control arm's, since the exploration scale was last set. Worse: the scale is
   * halved (down to SAFE_START_MIN_SCALE) in the models document, where serving reads it, and the evidence restarts.
   * Not on a pipeline with model tiers (its safe start does not read the scale). Undefined when nothing was judged.
   */
  async checkSafeStart(pipelineId: string): Promise<SafeStartCheck | undefined> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline || learnsTiers(pipeline)) return undefined;
    const strategies = learnedStrategies(view, pipeline);
    const first = strategies[0];
    if (!first) return undefined;
    const params = first.params as LearnedParams;
    if (params.controlShare === 0 || params.guardSafeStart === false) return undefined;
    const doc = this.registry.doc(pipelineId);
    if (doc && doc.active !== 0) return undefined;
    const current: SafeStartState = doc?.guard?.safeStart ?? { scale: 1, shrinks: 0 };
    const json = await this.core.redis.get(this.safeStartKey(pipelineId));
    const stored = json ? decodeSafeStartState(json) : undefined;
    // Evidence counts for the scale it was gathered at: a new scale (or a new safe start: a revert, an activation) restarts it.
    const segment = doc?.guard?.since ?? 0;
    const st: SafeStoredState =
      stored && stored.scale === current.scale && stored.shrinks === current.shrinks && stored.segment === segment
        ? stored
        : { scale: current.scale, shrinks: current.shrinks, segment, since: Date.now(), marker: stored?.marker ?? '', evidence: EMPTY_SAFE_START };
    const fresh = await this.freshEvents(pipelineId, st.marker);
    const learnedIds = new Set(strategies.map((s) => s.id));
    const costWeight = params.costWeight ?? 0;
    // The cost test (guard.ts safeStartCheck): it acts only with a safeStartMargin, and is listed in any case; decisions
    // made while explore-first explored are left out of it (their random splits are the cost the strategy's owner chose).
    const margin = params.safeStartMargin === undefined ? SAFE_START_MARGIN_DEFAULT : params.safeStartMargin;
    const exploreFirstUntil = (params.exploreFirst ?? 0) > 0 ? (doc?.exploreFirst?.endedAt ?? Infinity) : -Infinity;
    let evidence = st.evidence;
    for (let i = fresh.length - 1; i >= 0; i--) {
      const e = fresh[i]!;
      if ((e.m ?? 0) !== 0 || e.a === undefined || e.t < st.since || !learnedIds.has(e.s)) continue;
      // During the safe start the default split is every decision's first action (policy.ts decideAround; the control
      // arm's split merges into it): k = 0, or no logged distribution at all (the decision was certain).
      const atDefault = e.C === undefined || e.k === 0;
      // The candidate's plays (`v`) are its own arm's to judge (checkCandidate): not the cost test's.
      evidence = addSafeStartReward(evidence, rewardOf(e, costWeight), e.a === 1, atDefault, e.t >= exploreFirstUntil && e.v === undefined);
    }
    const opts = { alpha: params.guardAlpha ?? GUARD_DEFAULTS.alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin };
    // Each test acts on its own factor (guard.ts safeStartStep): the control test halves `scale` (the exploration and
    // the candidate's share), the cost test `exploration` (the exploration rate alone), each down to the floor.
    const exploration = current.exploration ?? 1;
    const { check, next: factors } = safeStartStep(evidence, current.shrinks, current, margin, opts, SAFE_START_MIN_SCALE);
    const verdict = check.control;
    const strategy = controlStrategyDef(view, pipeline).id;
    const listsCost = Date.now() >= exploreFirstUntil;
    // The cost test as listed: the acting test's verdict, or (no margin, or the exploration at its floor) the same
    // estimate against a margin of 0 at the safe start's level, reported only (`margin` null).
    const costOf = (c: SafeStartCheckVerdict, e: SafeStartEvidence, shrinks: number): NonNullable<SafeStartComparison['cost']> | undefined => {
      if (!listsCost) return undefined;
      const v = c.cost ?? safeStartCostVerdict(e, { ...opts, alpha: safeStartAlpha(opts.alpha, shrinks), margin: 0 });
      return { status: v.status, cost: v.cost, ci: v.ci ? [v.ci[0], v.ci[1]] : null, share: v.share, margin: c.cost ? v.margin : null, away: v.away, atDefault: v.atDefault };
    };
    // The running comparison, as listed in the model list (guard.safeStart.current) until the next tick.
    const comparison = (c: SafeStartCheckVerdict, e: SafeStartEvidence, shrinks: number, scale: number, since: number): SafeStartComparison => ({
      at: Date.now(),
      since,
      scale,
      status: c.control.status,
      learned: { n: c.control.learned.n, mean: c.control.learned.mean },
      control: { n: c.control.control.n, mean: c.control.control.mean, strategy },
      diff: c.control.diff,
      ci: c.control.ci ? [c.control.ci[0], c.control.ci[1]] : null,
      alpha: safeStartAlpha(opts.alpha, shrinks) / (c.cost ? 2 : 1),
      ...((cost) => (cost ? { cost } : {}))(costOf(c, e, shrinks)),
    });
    const next: SafeStoredState = { ...st, marker: fresh[0]?.id ?? st.marker, evidence, latest: comparison(check, evidence, current.shrinks, current.scale, st.since) };
    if (!factors) {
      await this.core.redis.set(this.safeStartKey(pipelineId), JSON.stringify(next));
      return { pipeline: pipelineId, scale: current.scale, verdict, ...(check.cost ? { cost: check.cost } : {}) };
    }
    const fmt = (x: number) => x.toFixed(4);
    const c = check.by === 'cost' ? check.cost! : undefined;
    const state: SafeStartState = {
      scale: factors.scale,
      ...(factors.exploration < 1 ? { exploration: factors.exploration } : {}),
      shrinks: current.shrinks + 1,
      at: Date.now(),
      by: check.by!,
      reason: c
        ? `the safe start's exploration (the default strategy's split perturbed) costs more than safeStartMargin ${c.margin} per decision against the control strategy ${strategy}'s split (shortfall ${fmt(c.cost!)}, always-valid interval [${fmt(c.ci![0])}, ${fmt(c.ci![1])}]; ${c.away.n} perturbed decisions, mean ${fmt(c.away.mean)}, against ${c.atDefault.n} at the default split, mean ${fmt(c.atDefault.mean)}): exploration rate factor ${exploration} → ${factors.exploration}`
        : `the safe start's learned traffic (the default strategy explored around${doc?.candidate ? ', the candidate mixed in' : ''}) is below the control strategy ${strategy}'s (diff ${fmt(verdict.diff!)}, always-valid interval [${fmt(verdict.ci![0])}, ${fmt(verdict.ci![1])}], ${verdict.learned.n} vs ${verdict.control.n} outcomes): exploration scale ${current.scale} → ${factors.scale}`,
      diff: c ? c.cost! : verdict.diff!,
      ci: c ? c.ci! : verdict.ci!,
      learned: verdict.learned,
      control: { ...verdict.control, strategy },
    };
    const scale = state.scale;
    const enc = servingModel(view, pipeline).encoder;
    if (!(await this.registry.setSafeStart(pipelineId, state, { signature: enc.signature, agents: pipeline.agents.map((a) => a.name) }))) return { pipeline: pipelineId, scale: current.scale, verdict };
    this.core.metrics.learnerGuardReverts.inc({ reason: 'safe-start', to: 'shrunk' });
    this.core.log.warn({ pipeline: pipelineId, ...state }, `learner guard: ${state.reason}`);
    // The evidence restarts at the new scale (its comparison, listed until the next tick, is empty).
    const restarted = safeStartStep(EMPTY_SAFE_START, state.shrinks, state, margin, opts, SAFE_START_MIN_SCALE).check;
    await this.core.redis.set(this.safeStartKey(pipelineId), JSON.stringify({ ...next, scale, shrinks: state.shrinks, since: state.at!, evidence: EMPTY_SAFE_START, latest: comparison(restarted, EMPTY_SAFE_START, state.shrinks, scale, state.at!) }));
    return { pipeline: pipelineId, scale, verdict, ...(check.cost ? { cost: check.cost } : {}), shrunk: state };
  }

  private async load(pipeline: string): Promise<State> {
    const json = await this.core.redis.get(this.key(pipeline));
    const none: State = { since: -1, marker: '', ...NEW_RUN };
    const s = json ? decodeState(json) : undefined;
    return s ? { ...s, total: s.total ?? EMPTY_EVIDENCE } : none;
  }

  private async save(pipeline: string, s: State): Promise<void> {
    await this.core.redis.set(this.key(pipeline), JSON.stringify(s));
  }
}
