import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import { callScript } from '../redis/scripts.js';
import type { Services } from '../kernel/module.js';
import { decodeDecisionRecord, type DecisionReader, type DecisionRecord } from '../kernel/decision.js';
import { decodeEvent, decodeEvents, type LoggedEvent } from './events.js';
import { compileFeatures, type FeaturesBody } from './features.js';
import { COLD_AFTER_CHANGE_DEFAULT, DEFAULT_DRIFT, forgetSpan, forgetWeight, keysGreedy, residualCheck, residualTest, windowAfterChange, type DriftRule, type ForgetSpan } from './drift.js';
import { DEFAULT_GATE, gateLevel, gateRuleFor, gateVerdict, retireVerdict, type GateVerdict } from './gate.js';
import { controlStrategyDef } from './control-arm.js';
import { backoffUnit, candidateAfter, CANDIDATE_BACKOFF_GATE_DEFAULT, gateBackoffApplies, gateShowsHarm, type DriftRetire } from './guard.js';
import { DEFAULT_GRACE_MS, defaultSplitOf, policyAgentsOf, servingModel, trainEveryOf, type LearnedParams, type LearnerMeta } from './kind.js';
import { defaultTierAction, learnsTiers, tierAgentsOf, tierModelIds, tierNeedGuess } from '@apportion/sdk/engine';
import { tierGateInput, tierResidual, tierStratum } from './tier-gate.js';
import { learnerKeys } from './keys.js';
import { pipelineTombstone } from '../pipelines/tombstone.js';
import { trainingParams } from './learned-strategies.js';
import { deserializeWeights, forward, initialWeights, serializeWeights } from './model.js';
import { CANDIDATE_SHARE, candidateShareFor, DRIFT_CANDIDATE_SHARE, greedyBudgets } from './policy.js';
import { loggedFeatures, loggingPolicyOf, outcomeLogged, outcomeWatchEnd } from './hooks.js';
import { appliedMarker } from '../feedback/processor.js';
import { pruneModelVersions } from './prune.js';
import { ModelRegistry, type ModelVersion } from './registry.js';
import { mulberry32 } from './rng.js';
import { runTrainJob, trainJob, type EscalationOptions, type TrainerEscalation, type TrainJobInput, type TrainJobOutput } from './train-process.js';
import type { TrainOptions } from './trainer.js';

/** Cap of the training buffer (newest events kept). */
export const BUFFER_CAP = 100_000;
/**
 * Most incoming outcomes and due decisions one ingest script call handles. Small enough that one call holds Redis
 * (and one round of building default events holds this process's event loop) for about 1.5 ms: with 5,000, one
 * learner-default call held Redis ~14 ms, a stall every request on the same Redis waited out.
 */
const INGEST_BATCH = 500;
const DEFAULTED_MEMORY_MS = 7 * 86_400_000;
/**
 * How long defaulted tickets are remembered: at least DEFAULTED_MEMORY_MS, and as long as an outcome of the decision
 * can still be applied (the applied-marker's deadline, markerDeadline in src/feedback/processor.ts, counted from the
 * default, which is after the decision): a job applied after its watch must find the ticket defaulted, and its event
 * dropped as late, never taken in beside the default reward.
 */
function defaultedMemoryMs(rewardWindowSeconds: number, markerGraceSeconds: number): number {
  return Math.max(DEFAULTED_MEMORY_MS, (rewardWindowSeconds + 1 + markerGraceSeconds) * 1000 + DEFAULT_GRACE_MS);
}
/** Resolved tickets (an outcome overtook its registration) are kept past the longest wait window. */
const RESOLVED_MEMORY_MS = 31 * 86_400_000 + DEFAULT_GRACE_MS;

export interface IngestResult {
  readonly moved: number;
  readonly dropped: number;
  readonly defaulted: number;
  /** Due decisions whose record had expired (or was not a learned decision): no default-reward event. */
  readonly lost: number;
  readonly left: number;
}

/** The latest priority escalation of a pipeline's retrain, as recorded (train-process.ts TrainerEscalation). */
export interface TrainerEscalationRecord {
  readonly at: number;
  readonly level: number;
  readonly policy: 'idle' | 'other';
  readonly nice: number;
  readonly how: 'in-place' | 'new-process';
  readonly afterMs: number;
  readonly reason?: string;
}

export interface TrainResult {
  readonly trained: boolean;
  readonly reason?: string;
  readonly model?: ModelVersion;
}

/**
 * The default-reward event of a learned decision (JSON), or '' when its record is gone or it was not a learned
 * decision of this pipeline. It carries the decision's logging policy (candidates, exact propensities, guard
 * arm) like an outcome's event: it trains the model, counts for the runtime guard and is exported, but
 * off-policy evaluation leaves default-reward events out (their reward was not observed). The default reward is the deciding
 * strategy's current `defaultReward` (0 once the strategy is deleted).
 */
export function defaultEvent(view: ControlView, pipeline: string, record: DecisionRecord | string | null | undefined): string {
  if (!record) return '';
  // An unreadable record (not JSON, or not a record) must not stall the sweep: the decision counts as lost.
  const d = typeof record === 'string' ? decodeDecisionRecord(record) : record;
  if (!d) return '';
  const m = d.meta?.learner as LearnerMeta | undefined;
  if (d.pipeline !== pipeline || !m) return '';
  const params = view.strategies.get(d.strategy)?.params as LearnedParams | undefined;
  const p = view.pipelines.get(pipeline);
  // The decision's true propensity rides along (the DSJSON export keeps it; OPE leaves default rewards out).
  const ev: LoggedEvent = { id: d.id, t: d.ts, s: d.strategy, f: loggedFeatures(view, pipeline, d.features), T: d.totalTokens, b: d.budgets, q: params?.defaultReward ?? 0, c: null, m: m.m, ...(p ? loggingPolicyOf(d, p) : {}), d: 1 };
  return JSON.stringify(ev);
}

/** Buffer ingest, counters and training of one pipeline's model (runs in the worker). */
export class TrainingService {
  readonly registry: ModelRegistry;
  /** Drift recovery's rule (drift.ts): DEFAULT_DRIFT; tests set another (e.g. with forgetting on). */
  drift: DriftRule = DEFAULT_DRIFT;

  constructor(
    private readonly core: Services<'redis' | 'keys' | 'store' | 'snapshot' | 'view' | 'kinds' | 'metrics' | 'log', 'modelsDir' | 'modelVersionsKeep' | 'redisUrl' | 'redisClusterNodes' | 'rewardWindowSeconds' | 'outcomeMarkerGraceSeconds'>,
    /** The decision records behind due default rewards (the allocation domain's DecisionStore). */
    private readonly decisions: DecisionReader,
    private readonly trainOptions: TrainOptions = {},
    /** Train in a low-priority child process (default) so serving in this process is neither blocked nor starved. */
    private readonly inThread = true,
    /**
     * Priority escalation of a slow retrain (train-process.ts): `afterMs` from APPORTION_TRAIN_ESCALATE_AFTER_MS;
     * `how` and `holdWhile` are for tests. Each step is logged, counted and recorded for the model list.
     */
    private readonly escalation: Omit<EscalationOptions, 'onEscalate'> & { readonly holdWhile?: TrainJobInput['holdWhile'] } = {},
  ) {
    this.registry = new ModelRegistry(core);
  }

  async ingest(pipeline: string, now = Date.now()): Promise<IngestResult> {
    const lk = learnerKeys(this.core.keys, pipeline);
    // The pipeline this ingest works for: nothing is written once it is deleted (its tombstone), see learner-ingest.lua.
    const version = this.core.view().raw.kinds.pipelines.get(pipeline)?.version ?? 0;
    const tomb = pipelineTombstone(this.core.keys, pipeline);
    let total = { moved: 0, dropped: 0, defaulted: 0, lost: 0, left: 0 };
    for (let round = 0; round < 400; round++) {
      const [moved, dropped, left, due] = await callScript(
        this.core.redis,
        'learnerIngest',
        [lk.incoming, lk.buffer, lk.pending, lk.defaulted, lk.resolved, tomb],
        [now, BUFFER_CAP, INGEST_BATCH, defaultedMemoryMs(this.core.config.rewardWindowSeconds, this.core.config.outcomeMarkerGraceSeconds), RESOLVED_MEMORY_MS, version],
      );
      const built = due.length > 0 ? await this.defaultDue(pipeline, version, due, now) : { defaulted: 0, lost: 0 };
      total = {
        moved: total.moved + moved,
        dropped: total.dropped + dropped,
        defaulted: total.defaulted + built.defaulted,
        lost: total.lost + built.lost,
        left,
      };
      if (left === 0 && moved + dropped < INGEST_BATCH && due.length < INGEST_BATCH) break;
    }
    const m = this.core.metrics.learnerEvents;
    if (total.moved) m.inc({ result: 'outcome' }, total.moved);
    if (total.dropped) m.inc({ result: 'late' }, total.dropped);
    if (total.defaulted) m.inc({ result: 'defaulted' }, total.defaulted);
    if (total.lost) m.inc({ result: 'lost' }, total.lost);
    return total;
  }

  /**
   * Default-reward events for due decisions, built from their decision records (the allocation path only
   * registered their ids), committed by learner-default.lua: only tickets still pending get one.
   */
  private async defaultDue(pipeline: string, version: number, tickets: readonly string[], now: number): Promise<{ defaulted: number; lost: number }> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const view = this.core.view();
    const tomb = pipelineTombstone(this.core.keys, pipeline);
    // The claim marks each decision without an outcome receipt as defaulted (an outcome received from then on is not
    // logged for the learner). One whose outcome was received first, within the wait window, is watched instead
    // (learner-default.lua): that outcome is its learner event if its job is applied (its applied-marker) before the
    // watch ends (outcomeWatchEnd), even while the job still waits in the queue; else it gets the default reward.
    const [claims, dead] = await Promise.all([this.decisions.claimForDefault(tickets), this.core.redis.get(tomb)]);
    // A decision made on a deleted predecessor of this pipeline (registered late, after the id was re-created)
    // gets no default reward here: it would feed the new pipeline's model with the old one's decisions.
    const deleted = Number(dead ?? 0);
    const args: (string | number)[] = [];
    const markers: string[] = [];
    const markerIndex = new Map<string, number>();
    const retention = this.core.config.rewardWindowSeconds;
    tickets.forEach((ticket, i) => {
      const c = claims[i];
      const r = c?.record;
      const ev = r && r.pipelineVersion <= deleted ? '' : defaultEvent(view, pipeline, r ?? null);
      // (A record of another pipeline is no decision of this one: its marker is in another slot, and it gets no event.)
      if (c?.outcome && c.record.pipeline === pipeline && outcomeLogged(view, c.record, c.outcome, retention)) {
        const m = appliedMarker(this.core.keys, c.record.pipeline, c.record.id);
        let k = markerIndex.get(m.key);
        if (k === undefined) markerIndex.set(m.key, (k = markers.push(m.key)));
        args.push(ticket, ev, outcomeWatchEnd(view, c.record, retention), k, m.member);
      } else args.push(ticket, ev, '', 0, '');
    });
    const [defaulted, lost] = await callScript(this.core.redis, 'learnerDefault', [lk.pending, lk.buffer, lk.defaulted, tomb, ...markers], [now, BUFFER_CAP, version, ...args]);
    if (lost > 0) this.core.log.warn({ pipeline, lost }, 'learned decisions past their wait window had no decision record: no default reward');
    return { defaulted, lost };
  }

  /** Newest first. */
  async events(pipeline: string, limit: number): Promise<LoggedEvent[]> {
    const raw = await this.core.redis.lrange(learnerKeys(this.core.keys, pipeline).buffer, 0, limit - 1);
    return decodeEvents(raw);
  }

  /** Counts an applied outcome; true when enough arrived since the last training to train again. */
  async countOutcome(pipeline: string, trainEvery: number): Promise<boolean> {
    const lk = learnerKeys(this.core.keys, pipeline);
    const res = await this.core.redis.multi().hincrby(lk.counters, 'outcomes', 1).hget(lk.counters, 'trainedAt').exec();
    const outcomes = Number(res?.[0]?.[1] ?? 0);
    const trainedAt = Number(res?.[1]?.[1] ?? 0);
    return outcomes - trainedAt >= trainEvery;
  }

  /** Whether a retrain is due by count (`trainEvery` outcomes: kind.ts trainEveryOf) or by time. */
  async due(pipeline: string, params: LearnedParams, trainEvery: number, now = Date.now()): Promise<boolean> {
    const key = learnerKeys(this.core.keys, pipeline).counters;
    const c = await this.core.redis.hgetall(key);
    const fresh = Number(c.outcomes ?? 0) - Number(c.trainedAt ?? 0);
    if (fresh >= trainEvery) return true;
    if (c.trainedTs === undefined) {
      // Never trained: the interval starts now (not at the epoch), so a handful of first outcomes does not
      // trigger a retrain on almost no data.
      await this.core.redis.hsetnx(key, 'trainedTs', now);
      return false;
    }
    return fresh > 0 && now - Number(c.trainedTs) >= (params.trainIntervalSeconds ?? 60) * 1000;
  }

  async train(pipelineId: string): Promise<TrainResult> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline) return { trained: false, reason: 'no such pipeline' };
    const trainedFor = view.raw.kinds.pipelines.get(pipelineId)?.version ?? 0;
    const params = trainingParams(view, pipeline);
    if (!params) return { trained: false, reason: 'no learned strategy' };
    // A model document of another shape: nothing is trained over it (the registry logs it once per change).
    const bad = this.registry.unreadable(pipelineId);
    if (bad) return { trained: false, reason: bad.message };
    // The declaration this retrain is for, taken once: the job encodes with it, the prior has its width, and the saved
    // version carries its signature. A declaration changed while the retrain runs (any of the awaits below) must not
    // be mixed in: the version would be fitted on one encoding and stamped with another.
    const decl = view.raw.kinds.features.get(pipelineId)?.doc as FeaturesBody | undefined;
    const encoder = compileFeatures(decl?.features ?? []);
    const signature = encoder.signature;
    const lk = learnerKeys(this.core.keys, pipelineId);
    await this.ingest(pipelineId);
    const counts = await this.core.redis.hmget(lk.counters, 'outcomes', 'trainedAt');
    const outcomes = Number(counts[0] ?? 0);
    const lastTrainedAt = Number(counts[1] ?? 0);
    // `trainGap`: outcomes between the last two retrains (at the first, the outcomes before it), the cadence retrains
    // really run at (by count, by time or on request); the backoff after refused candidates counts in it (guard.ts
    // backoffUnit). Left unset at the first retrain, a first candidate refused before the second waited 2 × trainEvery:
    // forever with trainEvery 1,000,000 and retrains by time or on request.
    const gap = outcomes - lastTrainedAt;
    await this.core.redis.hset(lk.counters, 'trainedAt', outcomes, 'trainedTs', Date.now(), ...(gap > 0 ? ['trainGap', gap] : []));
    // The newest trained version (the pending candidate) is the warm start, whatever the gate says about it.
    const before = servingModel(this.core.view(), pipeline);
    const warm = before.candidate ? { ...before.candidate, scaling: this.registry.doc(pipelineId)?.candidate?.scaling } : undefined;
    // Model tiers: the newest tier version (the pending candidate, else the serving one) is the tier fit's warm start.
    const docBefore = this.registry.doc(pipelineId);
    const tierWarm =
      docBefore?.candidate?.kind === 'tiers' && docBefore.candidate.tiers && before.candidate?.tiers
        ? { tiers: docBefore.candidate.tiers, scaling: docBefore.candidate.scaling }
        : docBefore?.kind === 'tiers' && docBefore.tiers && before.tiers
          ? { tiers: docBefore.tiers, scaling: docBefore.scaling }
          : undefined;
    // Explore-first (kind.ts `exploreFirst`): once the pipeline has that many outcomes, the safe start's random splits end.
    const exploreFirst = params.exploreFirst ?? 0;
    if (exploreFirst > 0 && outcomes >= exploreFirst && !this.registry.doc(pipelineId)?.exploreFirst) {
      await this.registry.endExploreFirst(pipelineId, outcomes, { signature, agents: pipeline.agents.map((a) => a.name) });
      this.core.log.info({ pipeline: pipelineId, outcomes, exploreFirst }, 'learner explore-first ended: the safe start serves no more random splits');
    }
    // Drift recovery (drift.ts): the newest trained version on the decisions since it was trained.
    const change = await this.checkDrift(pipeline, params, outcomes);
    if (params.gate !== false && change.changeTs !== undefined && change.sinceChange < (params.window ?? 8000)) await this.retireIfWorse(pipeline, params, change.changeTs, outcomes);
    if (params.gate !== false) {
      const gate = await this.gateCandidate(pipeline, params, change.changed, change.changeTs, outcomes);
      if (gate.waiting) return { trained: false, ...(gate.reason !== undefined ? { reason: gate.reason } : {}) };
    }
    // After candidates refused in a row (by the runtime guard, or by the gate with an estimate below −δ), the next one
    // waits (guard.ts candidateAfter).
    if (params.candidateBackoff !== false) {
      const [guardK, gateK, after] = (await this.core.redis.hmget(lk.counters, 'guardRefusals', 'gateRefusals', 'candidateAfter')).map((v) => Number(v ?? 0));
      if (outcomes < after!) {
        const k = guardK! + gateK!;
        const reason = `backing off: ${k} candidate${k === 1 ? ' was' : 's in a row were'} refused (gate: ${gateK}, guard: ${guardK}); the next is trained at outcome ${after} (now ${outcomes})`;
        this.core.log.info({ pipeline: pipelineId, reason }, 'learner retrain skipped');
        return { trained: false, reason };
      }
    }
    const serving = servingModel(this.core.view(), pipeline);
    // The warm start and the serving weights are read from the view of now: they have the captured width only while
    // the declaration is the captured one.
    if (serving.encoder.signature !== signature || before.encoder.signature !== signature) return this.declarationChanged(pipelineId, 'before training');
    const agents = pipeline.agents.map((a) => a.name);
    const costWeight = params.costWeight ?? 0;
    const doc = this.registry.doc(pipelineId);
    const tiered = learnsTiers(pipeline);
    const prior = { weights: initialWeights(encoder.dim, agents.length, pipeline.defaultTotalTokens, mulberry32(1)), scaling: undefined, version: 0 };
    // The warm start: the pending candidate, else the serving version, else (none pending, none serving: the guard
    // refused the candidate during the safe start or after a revert to the control) the newest saved version that fits
    // the features and agents — as the in-process loop warm-starts from its newest trained version — and only with
    // none of those the untrained prior, so a refusal does not throw away what was learned.
    // After a detected change within the window, while no version serves (drift recovery retired it, or the guard
    // reverted to the control): the untrained prior, not a fit of the world before the change (COLD_AFTER_CHANGE_DEFAULT).
    const cold = !tiered && COLD_AFTER_CHANGE_DEFAULT && params.driftRecovery !== false && serving.version === 0 && change.changeTs !== undefined && change.sinceChange < (params.window ?? 8000);
    const newest = !tiered && !cold && !warm && serving.version === 0 ? await this.newestUnrefused(pipelineId, signature, agents) : undefined;
    // A pipeline with model tiers trains the joint model (its token weights are the prior, never served).
    const init = tiered
      ? { weights: prior.weights, scaling: tierWarm?.scaling, version: 0 }
      : cold
        ? prior
        : warm
        ? { weights: warm.weights, scaling: warm.scaling, version: warm.version }
        : serving.version > 0
          ? { weights: serving.weights, scaling: doc?.scaling, version: serving.version }
          : newest
            ? { weights: deserializeWeights(newest.weights), scaling: newest.scaling, version: newest.version }
            : prior;
    const input: TrainJobInput = {
      redisUrl: this.core.config.redisUrl,
      redisClusterNodes: this.core.config.redisClusterNodes,
      bufferKey: lk.buffer,
      window: change.window,
      features: decl?.features ?? [],
      agents,
      costWeight,
      ...(params.halfLife !== undefined || change.shortened ? { halfLife: change.halfLife } : {}),
      // Drift recovery's forgetting (drift.ts forgetSpan): events decided before the detection weigh less.
      ...(change.forget && !tiered ? { forget: change.forget } : {}),
      init: serializeWeights(init.weights),
      ...(init.scaling ? { initScaling: init.scaling } : {}),
      seed: outcomes,
      train: this.trainOptions,
      ...(tiered
        ? {
            tiers: {
              agents: tierAgentsOf(pipeline),
              models: pipeline.agents.map((a) => (a.models ?? []).map((m) => m.model)),
              needGuess: tierNeedGuess(pipeline),
              ...(tierWarm ? { init: tierWarm.tiers } : {}),
            },
          }
        : {}),
    };
    const out = await this.runJob(pipelineId, input);
    if (!out.trained || !out.weights || !out.metrics) return { trained: false, reason: out.reason ?? 'not trained' };
    // Changed while it trained: not saved, not proposed (the next retrain trains for the declaration of then).
    if (this.declarationSignature(pipelineId) !== signature) return this.declarationChanged(pipelineId, 'while it trained');
    // Deleted while it trained: its version is not saved (it would bring the purged model keys back, or land in a
    // pipeline re-created under the id). The sweep removes what a save racing the delete still put back.
    const deletedAt = Number((await this.core.redis.get(pipelineTombstone(this.core.keys, pipelineId))) ?? 0);
    if (deletedAt >= trainedFor) return { trained: false, reason: 'the pipeline was deleted while its model trained' };
    const weights = deserializeWeights(out.weights);
    const metrics = out.metrics;
    const saved = await this.registry.save(pipelineId, weights, {
      signature,
      agents,
      // The window and recency half-life this version was trained with (drift recovery shortens the half-life after a change).
      // A tier fit weighs by recency only when a half-life was passed (train-tiers.ts): otherwise none is listed.
      metrics: { ...metrics, costWeight, buffer: out.events, window: change.window, ...(input.halfLife !== undefined || !tiered ? { halfLife: change.halfLife } : {}), ...(input.forget ? { preChangeWeight: input.forget.weight } : {}), ...(init.version > 0 ? { warmStart: init.version } : {}) },
      ...(out.scaling ? { scaling: out.scaling } : {}),
      ...(out.featureUse ? { features: out.featureUse } : {}),
      // A tier version records the candidate models it was fitted for: it serves only a pipeline declaring them.
      ...(out.tiers ? { kind: 'tiers' as const, tiers: { ...out.tiers, models: tierModelIds(pipeline) } } : { kind: 'tokens' as const }),
    });
    // Versions an earlier retrain saved but never proposed (its process stopped in between) are listed as such.
    try {
      await this.registry.listAbandoned(pipelineId, saved.version);
    } catch (err) {
      this.core.log.warn({ err, pipeline: pipelineId }, 'abandoned model versions not listed (they stay unlisted; a rollback still finds them)');
    }
    // A new version serves only once it clears the activation gate (at the next retrain): until then it is the
    // candidate, its split mixed into a share of decisions so the gate has support for it.
    if (params.gate === false) {
      // A candidate proposed while the gate was on would never be judged now, and would stay mixed into decisions:
      // superseded by this version, as a newer candidate supersedes it (registry.ts propose).
      const pending = this.registry.doc(pipelineId)?.candidate;
      if (pending && pending.version !== saved.version) {
        const prior = (await this.registry.get(pipelineId, pending.version))?.gate;
        await this.registry.recordGate(pipelineId, pending.version, {
          status: 'refused',
          reason: `superseded: version ${saved.version} was trained with the activation gate off (gate: false) before the gate decided on this one`,
          events: prior?.events ?? 0,
          comparisons: prior?.comparisons ?? [],
          decidedAt: Date.now(),
          ...(prior?.look !== undefined ? { look: prior.look } : {}),
        });
        this.core.log.warn({ pipeline: pipelineId, superseded: pending.version, version: saved.version }, 'learner candidate superseded: the gate is off');
      }
      const gate = { status: 'passed' as const, reason: 'the activation gate is off for this strategy (gate: false)', events: 0, comparisons: [], decidedAt: Date.now() };
      await this.registry.recordGate(pipelineId, saved.version, gate);
      await this.registry.activate({ ...saved, gate });
      await this.core.redis.hsetnx(lk.counters, 'firstServedTs', gate.decidedAt);
    } else {
      // A token version trained while a detected change is recent may be mixed in at its own share (policy.ts
      // candidateShareFor; the strategy's `driftCandidateShare`, off by default): stored with the candidate, so
      // every server and the SDK's local mode serve the same mixture.
      const share = tiered ? undefined : candidateShareFor(change.shortened, params.driftCandidateShare ?? DRIFT_CANDIDATE_SHARE);
      await this.registry.propose(saved, share !== undefined && share !== CANDIDATE_SHARE ? share : undefined);
    }
    try {
      await pruneModelVersions(this.core.redis, this.core.keys, pipelineId, this.registry.doc(pipelineId), this.core.config.modelVersionsKeep);
    } catch (err) {
      this.core.log.warn({ err, pipeline: pipelineId }, 'model versions not pruned (retried after the next training)');
    }
    this.core.log.info({ pipeline: pipelineId, version: saved.version, rows: metrics.rows, fetched: out.fetched, ms: metrics.ms, holdoutMse: metrics.holdoutMse }, 'learner model trained (candidate)');
    // Values the encoder cannot read count as missing (or unknown): a user sending "12" for a numeric feature learns
    // nothing from it, so say so where they look (the log, and the version's `unusableFeatures` in GET /v1/models).
    for (const [feature, use] of Object.entries(out.featureUse ?? {}))
      if (use.unusable > 0)
        this.core.log.warn({ pipeline: pipelineId, version: saved.version, feature, present: use.present, unusable: use.unusable, example: use.example }, `learner: ${use.unusable} of ${out.events} logged requests carried a value of feature "${feature}" that its declaration cannot read (e.g. ${use.example}); they count as missing`);
    return { trained: true, model: saved };
  }

  /**
   * The newest saved token version that fits the declaration and agents and that the runtime guard did not refuse (a
   * candidate it refused is not a warm start: the next fit would start where the refused one was), among the newest 25.
   */
  private async newestUnrefused(pipelineId: string, signature: string, agents: readonly string[]): Promise<ModelVersion | undefined> {
    const seq = Number((await this.core.redis.get(learnerKeys(this.core.keys, pipelineId).modelSeq)) ?? 0);
    for (let v = seq; v >= 1 && v > seq - 25; v--) {
      const mv = await this.registry.get(pipelineId, v);
      if (mv && (mv.kind ?? 'tokens') === 'tokens' && mv.signature === signature && mv.agents.join('\u0000') === agents.join('\u0000') && !mv.gate?.guard) return mv;
    }
    return undefined;
  }

  /** Runs one training job: in the trainer child (default) or in this process. */
  protected async runJob(pipelineId: string, input: TrainJobInput): Promise<TrainJobOutput> {
    const escalations: Promise<void>[] = [];
    const out = this.inThread
      ? await runTrainJob({ ...input, ...(this.escalation.holdWhile ? { holdWhile: this.escalation.holdWhile } : {}) }, (err) => this.core.log.warn({ err }, 'training process unavailable; training in this process'), {
          ...this.escalation,
          onEscalate: (e) => escalations.push(this.escalated(pipelineId, e)),
        })
      : await trainJob({ ...input, train: { ...this.trainOptions, yieldToEventLoop: true } });
    await Promise.all(escalations);
    return out;
  }

  /** The encoder signature of the pipeline's feature declaration in the current view. */
  private declarationSignature(pipelineId: string): string {
    const decl = this.core.view().raw.kinds.features.get(pipelineId)?.doc as FeaturesBody | undefined;
    return compileFeatures(decl?.features ?? []).signature;
  }

  /** A retrain that straddled a change of the feature declaration: skipped (counted as such by the caller), with its reason. */
  private declarationChanged(pipelineId: string, when: string): TrainResult {
    const reason = `the feature declaration changed ${when}: nothing saved (the next retrain trains for the new declaration)`;
    this.core.log.warn({ pipeline: pipelineId, reason }, 'learner retrain skipped');
    return { trained: false, reason };
  }

  /**
   * A retrain ran past the escalation bound and its trainer's CPU priority rose one step (train-process.ts): logged,
   * counted in apportion_learner_trainer_escalations_total, and recorded on the pipeline's counters (the count and
   * the latest step, listed under `trainer` in GET /v1/models/:pipeline). Never throws: a failed record is logged.
   */
  private async escalated(pipeline: string, e: TrainerEscalation): Promise<void> {
    const to = `${e.to.policy === 'idle' ? 'SCHED_IDLE' : 'SCHED_OTHER'} nice ${e.to.nice}`;
    const from = `${e.from.policy === 'idle' ? 'SCHED_IDLE' : 'SCHED_OTHER'} nice ${e.from.nice}`;
    this.core.log.warn(
      { pipeline, from, to, how: e.how, pid: e.pid, afterMs: e.afterMs, ...(e.reason !== undefined ? { reason: e.reason } : {}) },
      `learner retrain still running after ${Math.round(e.afterMs / 1000)} s: trainer priority raised to ${to} (${e.how})`,
    );
    this.core.metrics.learnerTrainerEscalations.inc({ to: `${e.to.policy}-nice${e.to.nice}`, how: e.how });
    const record: TrainerEscalationRecord = { at: Date.now(), level: e.to.level, policy: e.to.policy, nice: e.to.nice, how: e.how, afterMs: e.afterMs, ...(e.reason !== undefined ? { reason: e.reason } : {}) };
    try {
      await this.core.redis.multi().hincrby(learnerKeys(this.core.keys, pipeline).counters, 'escalations', 1).hset(learnerKeys(this.core.keys, pipeline).counters, 'lastEscalation', JSON.stringify(record)).exec();
    } catch (err) {
      this.core.log.warn({ err, pipeline }, 'trainer escalation not recorded');
    }
  }

  /** The trainer escalations recorded for a pipeline (the model list's `trainer`). */
  async escalations(pipeline: string): Promise<{ escalations: number; lastEscalation: TrainerEscalationRecord | null }> {
    const [n, last] = await this.core.redis.hmget(learnerKeys(this.core.keys, pipeline).counters, 'escalations', 'lastEscalation');
    let rec: TrainerEscalationRecord | null = null;
    try {
      rec = last ? (JSON.parse(last) as TrainerEscalationRecord) : null;
    } catch {
      rec = null;
    }
    return { escalations: Number(n ?? 0), lastEscalation: rec };
  }

  /**
   * Puts the pending candidate version to the activation gate (gate.ts) on the decisions logged since it was
   * proposed. Too few of them: it keeps waiting (and no new version is trained over it). Otherwise the verdict is
   * recorded on the version and, if it passed, the version serves.
   */
  async gateCandidate(pipeline: Pipeline, params: LearnedParams, changed = false, changeTs?: number, outcomes?: number): Promise<{ waiting: boolean; reason?: string; verdict?: GateVerdict }> {
    const doc = this.registry.doc(pipeline.id);
    const pending = doc?.candidate;
    if (!pending) return { waiting: false };
    const serving = servingModel(this.core.view(), pipeline);
    const c = serving.candidate;
    const now = Date.now();
    if (!c || c.version !== pending.version) {
      await this.registry.recordGate(pipeline.id, pending.version, { status: 'refused', reason: 'trained for another feature declaration, agent list or (model tiers) candidate models than the pipeline now has', events: 0, comparisons: [], decidedAt: now });
      return { waiting: false };
    }
    const rule = gateRuleFor(!!c.tiers, params.gateDelta);
    const events = await this.eventsSince(pipeline.id, pending.proposedAt ?? pending.createdAt, Math.max(params.window ?? 8000, rule.minEvents));
    const pa = policyAgentsOf(pipeline);
    const dflt = defaultSplitOf(this.core);
    // Which look at this candidate this is (gate.ts): one more than the looks recorded on it.
    const look = ((await this.registry.get(pipeline.id, c.version))?.gate?.look ?? 0) + 1;
    // The serving version's own held-out decisions (since it was trained, or since the last detected change): the gate's lineage evidence.
    const servingMv = serving.version > 0 && !!c.tiers === !!serving.tiers ? await this.registry.get(pipeline.id, serving.version) : undefined;
    const evidence = servingMv ? await this.eventsSince(pipeline.id, Math.max(servingMv.createdAt, changeTs ?? 0), Math.max(params.window ?? 8000, rule.minEvents)) : undefined;
    const verdict = gateVerdict(
      c.tiers
        ? tierGateInput(pipeline, params, events, { ...c, tiers: c.tiers }, serving.tiers ? { version: serving.version, tiers: serving.tiers, encoder: serving.encoder, ...(evidence ? { evidence } : {}) } : undefined, (e) =>
            defaultTierAction({ view: this.core.view, kinds: () => this.core.kinds }, pipeline, { features: e.f, totalTokens: e.T, ...(e.X !== undefined ? { maxCostUsd: e.X } : {}) }),
          )
        : {
            events,
            agents: pipeline.agents.map((a) => a.name),
            costWeight: params.costWeight ?? 0,
            candidate: c,
            candidateSplit: (e) => greedyBudgets(forward(c.weights, c.encoder.encode(e.f)), pa, e.T),
            ...(serving.version > 0
              ? {
                  serving: {
                    version: serving.version,
                    split: (e: LoggedEvent) => greedyBudgets(forward(serving.weights, serving.encoder.encode(e.f)), pa, e.T),
                    ...(evidence ? { evidence: { events: evidence, model: { weights: serving.weights, encoder: serving.encoder } } } : {}),
                  },
                }
              : {}),
            defaultSplit: (e) => dflt(pipeline, { features: e.f, totalTokens: e.T }),
          },
      rule,
      look,
    );
    if (verdict.events < rule.minEvents) return { waiting: true, reason: `candidate version ${c.version} awaits the gate: ${verdict.reason}`, verdict };
    if (verdict.wait && !changed) {
      // Probably not worse, not yet shown: it stays the candidate (nothing is trained over it) and is judged again
      // on all the decisions since it was proposed at the next retrain.
      await this.registry.recordGate(pipeline.id, c.version, { status: 'candidate', reason: verdict.reason, events: verdict.events, comparisons: verdict.comparisons, decidedAt: now, look });
      this.core.log.info({ pipeline: pipeline.id, version: c.version, look, reason: verdict.reason }, 'learner activation gate: waiting for more decisions');
      return { waiting: true, reason: `candidate version ${c.version} awaits the gate's next look: ${verdict.reason}`, verdict };
    }
    // Explore-first holds the safe start: a version that passes before the pipeline has `exploreFirst` outcomes is
    // refused with that reason (not counted in the backoff: its estimate showed no harm), and the next retrain proposes another.
    const exploreFirst = params.exploreFirst ?? 0;
    const count = outcomes ?? Number((await this.core.redis.hget(learnerKeys(this.core.keys, pipeline.id).counters, 'outcomes')) ?? 0);
    const held = verdict.pass && serving.version === 0 && exploreFirst > 0 && count < exploreFirst;
    const reason = held
      ? `held: explore-first holds the safe start until outcome ${exploreFirst} (now ${count}); the gate passed it: ${verdict.reason}`
      : verdict.wait
        ? `${verdict.reason}; refused instead of waiting: the world changed since it was trained (drift recovery)`
        : verdict.reason;
    const pass = verdict.pass && !held;
    const record = { status: pass ? ('passed' as const) : ('refused' as const), reason, events: verdict.events, comparisons: verdict.comparisons, decidedAt: now, look };
    await this.registry.recordGate(pipeline.id, c.version, record);
    this.core.log.info({ pipeline: pipeline.id, version: c.version, pass, reason }, 'learner activation gate');
    if (!verdict.pass && !changed && params.candidateBackoff !== false && gateBackoffApplies(params.candidateBackoffGate ?? CANDIDATE_BACKOFF_GATE_DEFAULT, serving.version) && gateShowsHarm({ pass: false, comparisons: verdict.comparisons }, rule.delta)) {
      // Not when drift recovery detected a change at this retrain: the candidate was trained before it, so its refusal
      // says the world moved, not that the fits do harm, and the retrain that follows is the recovery's.
      // Refused with an estimate below −δ (not for support): it counts in the backoff after refused candidates like a
      // runtime guard's refusal (guard.ts candidateAfter), so the next candidate waits I × 2^min(k, 5) outcomes.
      const lk = learnerKeys(this.core.keys, pipeline.id);
      const [gateK, guardK, outcomes, gap] = ((await this.core.redis.multi().hincrby(lk.counters, 'gateRefusals', 1).hget(lk.counters, 'guardRefusals').hget(lk.counters, 'outcomes').hget(lk.counters, 'trainGap').exec()) ?? []).map((r) => Number(r?.[1] ?? 0));
      const after = candidateAfter(outcomes!, gateK! + guardK!, backoffUnit(trainEveryOf(params, pipeline), gap!));
      await this.core.redis.hset(lk.counters, 'candidateAfter', after);
      this.core.log.info({ pipeline: pipeline.id, version: c.version, gateRefusals: gateK, guardRefusals: guardK, candidateAfter: after }, 'learner activation gate: refused with an estimate below −δ; the next candidate backs off');
    }
    if (pass) {
      const mv = await this.registry.get(pipeline.id, c.version);
      if (mv) await this.registry.activate({ ...mv, gate: record });
      // A candidate passed: the backoff after refused candidates (the guard's and the gate's) ends.
      await this.core.redis.hdel(learnerKeys(this.core.keys, pipeline.id).counters, 'guardRefusals', 'gateRefusals', 'candidateAfter');
      // Where the first trained version cleared the gate (drift recovery's forgetting keeps the events before it: DriftRule.forgetKeepStart).
      await this.core.redis.hsetnx(learnerKeys(this.core.keys, pipeline.id).counters, 'firstServedTs', now);
    }
    return { waiting: false, verdict: held ? { ...verdict, pass: false, reason } : verdict };
  }

  /**
   * Drift recovery (drift.ts): checks the newest trained version (the pending candidate, else the serving one) on
   * the decisions logged since it was trained; a detected change is recorded (the counters' `changeAt`, in
   * outcomes) and the training window and half-life of this and the next retrains shrink to the events since it.
   */
  async checkDrift(
    pipeline: Pipeline,
    params: LearnedParams,
    outcomes: number,
  ): Promise<{ changed: boolean; window: number; halfLife: number; shortened: boolean; sinceChange: number; changeTs?: number; forget?: ForgetSpan }> {
    const rule = this.drift;
    const window = params.window ?? 8000;
    const halfLife = params.halfLife ?? 1000;
    const lk = learnerKeys(this.core.keys, pipeline.id);
    const model = servingModel(this.core.view(), pipeline);
    const doc = this.registry.doc(pipeline.id);
    const latest = model.candidate ?? (model.version > 0 ? { version: model.version, weights: model.weights, encoder: model.encoder, ...(model.tiers ? { tiers: model.tiers } : {}) } : undefined);
    let changed = false;
    if (latest && params.driftRecovery !== false) {
      const mv = await this.registry.get(pipeline.id, latest.version);
      if (mv) {
        const since = doc?.candidate?.version === mv.version ? (doc.candidate.proposedAt ?? mv.createdAt) : mv.createdAt;
        const events = await this.eventsSince(pipeline.id, since, window);
        const held = { holdoutMse: mv.metrics.holdoutMse, rows: mv.metrics.rows, ...(mv.metrics.holdoutStrata ? { holdoutStrata: mv.metrics.holdoutStrata } : {}) };
        // A tier version (model tiers) is checked on its own reward model's residuals (tier-gate.ts tierResidual),
        // each decision against the held-out error of its own model assignment when the version stores them.
        // (DriftRule.span, drift.ts checkedVersions: an option measured in the loop only, not adopted, not served.)
        const check = latest.tiers
          ? residualTest(
              events,
              tierResidual(pipeline, params, { encoder: latest.encoder, tiers: latest.tiers }),
              held,
              rule,
              tierStratum(pipeline, held.holdoutStrata && keysGreedy(held.holdoutStrata) ? { encoder: latest.encoder, tiers: latest.tiers, costWeight: params.costWeight ?? 0 } : undefined),
            )
          : residualCheck(events, { ...latest, ...held }, pipeline.agents.map((a) => a.name), params.costWeight ?? 0, rule);
        if (check.changed) {
          changed = true;
          // The change happened after the version was trained: it is placed there (at most the events since then,
          // and the time the version was trained, so the decisions judged after it are the ones the version never saw).
          const changeAt = Math.max(0, outcomes - check.n);
          // Where (outcomes, time) and on which version the change was detected: forgetting's boundary and its second check.
          await this.core.redis.multi().hset(lk.counters, 'changeAt', changeAt, 'changeTs', since, 'detectedAt', outcomes, 'detectedTs', Date.now(), 'detectedVersion', mv.version).hdel(lk.counters, 'forgetConfirmed').exec();
          await this.registry.recordChange(pipeline.id, { detectedAt: Date.now(), version: mv.version, changeTs: since, changeAt, mse: check.mse, holdoutMse: check.holdoutMse, z: check.z, n: check.n, reason: check.reason });
          this.core.log.warn({ pipeline: pipeline.id, version: mv.version, changeAt, reason: check.reason }, 'learner: the world changed (drift recovery: training on the events since the change)');
        }
      }
    }
    const [changeAt, changeTs, detectedAt, detectedTs, detectedVersion, confirmedField, firstServedTs, retiredTs] = (
      await this.core.redis.hmget(lk.counters, 'changeAt', 'changeTs', 'detectedAt', 'detectedTs', 'detectedVersion', 'forgetConfirmed', 'firstServedTs', 'retiredTs')
    ).map((v) => (v === null ? NaN : Number(v)));
    const sinceChange = Number.isFinite(changeAt) ? outcomes - changeAt! : Infinity;
    const w = windowAfterChange(sinceChange, window, halfLife, rule);
    // After a detection: the events decided before it forgotten (forgetSpan), as the loop does (sim/loop.ts).
    let forget: ForgetSpan | undefined;
    if (params.driftRecovery !== false && Number.isFinite(detectedAt) && Number.isFinite(detectedTs)) {
      const since = outcomes - detectedAt!;
      let confirmed = confirmedField === 1;
      if (rule.forgetConfirm && !Number.isFinite(confirmedField) && forgetWeight(since, rule) < 1) {
        confirmed = await this.confirmChange(pipeline, params, detectedVersion!, detectedTs!, window, rule);
        await this.core.redis.hset(lk.counters, 'forgetConfirmed', confirmed ? 1 : 0);
      }
      forget = forgetSpan({ detectedAt: detectedTs!, since, firstServedAt: params.gate === false ? 0 : Number.isFinite(firstServedTs) ? firstServedTs! : undefined, confirmed, retired: retiredTs! >= changeTs! }, rule);
    }
    return { changed, ...w, sinceChange, ...(Number.isFinite(changeTs) ? { changeTs: changeTs! } : {}), ...(forget ? { forget } : {}) };
  }

  /** Forgetting's second check (DriftRule.forgetConfirm): the version the change was detected on, checked again on the decisions since the detection. */
  private async confirmChange(pipeline: Pipeline, params: LearnedParams, version: number, detectedTs: number, window: number, rule: DriftRule): Promise<boolean> {
    const mv = Number.isFinite(version) ? await this.registry.get(pipeline.id, version) : undefined;
    if (!mv || mv.kind === 'tiers') return false;
    const decl = this.core.view().raw.kinds.features.get(pipeline.id)?.doc as FeaturesBody | undefined;
    const m = { weights: deserializeWeights(mv.weights), encoder: compileFeatures(decl?.features ?? [], mv.scaling), holdoutMse: mv.metrics.holdoutMse, rows: mv.metrics.rows };
    return residualCheck(await this.eventsSince(pipeline.id, detectedTs, window), m, pipeline.agents.map((a) => a.name), params.costWeight ?? 0, rule).changed;
  }

  /**
   * After a detected change (drift.ts): the serving version is put to the gate's rule against the default strategy
   * on the decisions since the change (gate.ts retireVerdict); estimated worse by more than δ, it stops serving
   * through the guard's revert to the control strategy (recorded in the model list's reverts, without the
   * guard's hold, so the next candidate that clears the gate serves at once).
   */
  async retireIfWorse(pipeline: Pipeline, params: LearnedParams, changeTs: number, outcomes: number): Promise<boolean> {
    const view = this.core.view();
    const serving = servingModel(view, pipeline);
    const doc = this.registry.doc(pipeline.id);
    if (serving.version === 0 || !doc || doc.active !== serving.version) return false;
    const rule = { ...DEFAULT_GATE, ...(params.gateDelta !== undefined ? { delta: params.gateDelta } : {}) };
    const since = Math.max(changeTs, doc.activatedAt);
    const events = await this.eventsSince(pipeline.id, since, Math.max(params.window ?? 8000, rule.minEvents));
    const pa = policyAgentsOf(pipeline);
    const dflt = defaultSplitOf(this.core);
    const { retire, verdict } = retireVerdict(
      serving.tiers
        ? // A tier version: its greedy (models, budgets) against the default strategy's action through the tier stage, as the gate judges tier candidates.
          tierGateInput(pipeline, params, events, { weights: serving.weights, encoder: serving.encoder, tiers: serving.tiers }, undefined, (e) =>
            defaultTierAction({ view: this.core.view, kinds: () => this.core.kinds }, pipeline, { features: e.f, totalTokens: e.T, ...(e.X !== undefined ? { maxCostUsd: e.X } : {}) }),
          )
        : {
            events,
            agents: pipeline.agents.map((a) => a.name),
            costWeight: params.costWeight ?? 0,
            candidate: { weights: serving.weights, encoder: serving.encoder },
            candidateSplit: (e) => greedyBudgets(forward(serving.weights, serving.encoder.encode(e.f)), pa, e.T),
            defaultSplit: (e) => dflt(pipeline, { features: e.f, totalTokens: e.T }),
          },
      rule,
    );
    const d = verdict.comparisons.find((c) => c.against === 'default');
    if (!retire || !d) return false;
    // The gate's estimate as it is (a one-sided DR bound on the decisions since the change), not a guard interval.
    const record: DriftRetire = {
      reason: 'drift',
      from: serving.version,
      to: 0,
      at: Date.now(),
      diff: d.diff,
      estimate: {
        events: verdict.events,
        since,
        serving: d.candidate,
        default: d.reference,
        defaultStrategy: controlStrategyDef(view, pipeline).id,
        lower: d.lo,
        level: gateLevel({ ...rule, looks: 1 }),
        delta: rule.delta,
      },
    };
    // holdUntil = now: no hold, the next candidate that clears the gate serves at once.
    if (!(await this.registry.revert(pipeline.id, record, outcomes))) return false;
    // When (drift recovery's forgetting may wait for it: DriftRule.forgetOnRetire).
    await this.core.redis.hset(learnerKeys(this.core.keys, pipeline.id).counters, 'retiredTs', record.at);
    this.core.metrics.learnerGuardReverts.inc({ reason: 'drift', to: 'control' });
    this.core.log.warn({ pipeline: pipeline.id, version: serving.version, reason: verdict.reason }, `learner drift recovery: model ${serving.version} is estimated worse than the default strategy since the change; the default strategy serves until a candidate clears the gate`);
    return true;
  }

  /** Logged events of decisions made at or after `since` (epoch ms), newest first, from the newest `limit`; read in chunks of 1,000 (stops at a chunk older than `since`). */
  private async eventsSince(pipeline: string, since: number, limit: number): Promise<LoggedEvent[]> {
    const key = learnerKeys(this.core.keys, pipeline).buffer;
    const out: LoggedEvent[] = [];
    for (let at = 0; at < limit; at += 1000) {
      const raw = await this.core.redis.lrange(key, at, Math.min(limit, at + 1000) - 1);
      let older = 0;
      for (const r of raw) {
        const e = decodeEvent(r);
        if (!e) {
          older++; // not an event (corrupted in Redis): left out, and it does not keep the scan going
          continue;
        }
        // The buffer is in outcome order: a late outcome of an older decision may sit among newer ones.
        if (e.t < since) older++;
        else out.push(e);
      }
      if (raw.length < 1000 || older === raw.length) break;
      await new Promise<void>((r) => setImmediate(r));
    }
    return out;
  }
}
