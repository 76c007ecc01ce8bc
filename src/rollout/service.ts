import { Type } from '@sinclair/typebox';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ControlView } from '../control/view.js';
import type { Versioned } from '../control/store.js';
import { AppError } from '../errors/app-error.js';
import { parseArmStats, type ArmStats } from '../feedback/stats-reader.js';
import { jsonDecoder } from '../redis/decode.js';
import type { Keys } from '../redis/keys.js';
import { BUILTIN_UNIFORM_ID } from '../strategies/schema.js';
import { analyzePhase, checkGuardrails, srmCounts, elasticities, type Elasticity, type GuardrailCheck, type Observation, type PhaseResult } from './analysis.js';
import { experimentArm } from './arms.js';
import { checkPhaseCap, effectiveCoverage, experimentView, heldStrategy, normalizeExperiment, probeVariantName } from './model.js';
import { srmSequential } from '../stats/srm.js';
import type { ExperimentBody, ExperimentDoc, ExperimentState, SrmFlag, Status, Variant } from './schema.js';
import { WriteConflict, type AuditEntry, type DocWrite, type ExperimentsState, type ExperimentStore } from './store.js';

/**
 * Attempts of one experiment write. A write conflicts only with writes of what it depends on (the same
 * experiment, the documents it was validated against, a guard it names: see guardsOf), and each of its failed
 * attempts means one of those writes applied, so a write fails with CONCURRENT_MODIFICATION only when more than
 * this many writes of the same experiment or layer meet it.
 */
const MAX_ATTEMPTS = 30;

/** The guard of a pipeline's holdout: bumped by every write of a holdout document, named by a promote. */
const holdoutGuard = (pipeline: string): string => `holdout:${pipeline}`;

/**
 * The slot an experiment holds in a layer while it is not stopped (drafts reserve theirs): its guard (layers are
 * per tenant, LAYER_OVERLAP compares experiments on pipelines of one owner) and its range.
 */
function layerSlot(st: ExperimentsState, doc: ExperimentDoc | undefined): { guard: string; range: string } | undefined {
  if (!doc?.layer || doc.state.status === 'stopped') return undefined;
  const owner = st.pipelines.get(doc.pipeline)?.owner ?? '';
  return { guard: `layer:${JSON.stringify([owner, doc.layer.id])}`, range: doc.layer.range.join(' ') };
}

/**
 * The guards a write names (checked against what it read, bumped when it applies): those of what its experiment
 * documents take or give up that other experiments' writes are validated against. A layer's guard when a slot
 * is taken, moved or freed (so two experiments never take overlapping ranges of one layer on what they read),
 * a pipeline's holdout guard for any write of a holdout (one holdout per pipeline; a promote reads it), plus
 * `extra`. Every other write (a start, a pause, a ramp, a replace keeping its slot) names none and meets only
 * writes of its own documents.
 */
function guardsOf(st: ExperimentsState, docs: readonly DocWrite[], extra: readonly string[] = []): string[] {
  const out = new Set(extra);
  for (const d of docs) {
    if (d.kind !== 'experiments' || d.checkOnly) continue;
    const before = st.experiments.get(d.id)?.doc;
    const after = (d.doc as ExperimentDoc | null) ?? undefined;
    const a = layerSlot(st, before);
    const b = layerSlot(st, after);
    if (a?.guard !== b?.guard || a?.range !== b?.range) {
      if (a) out.add(a.guard);
      if (b) out.add(b.guard);
    }
    for (const x of [before, after]) if (x?.type === 'holdout') out.add(holdoutGuard(x.pipeline));
  }
  return [...out].sort();
}

export type Transition = 'start' | 'pause' | 'resume' | 'stop';

/** Which statuses each transition leaves from, and where it goes. */
const TRANSITIONS: Record<Transition, { from: readonly Status[]; to: Status }> = {
  start: { from: ['draft'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  stop: { from: ['draft', 'running', 'paused', 'rolled_back'], to: 'stopped' },
};

export interface ResultsOptions {
  /** Cap cost at this quantile before comparing (e.g. 0.99). */
  readonly winsorize?: number;
}

export interface ExperimentResults {
  readonly experiment: string;
  readonly pipeline: string;
  readonly type: string;
  readonly status: Status;
  readonly phase: number;
  readonly effectiveCoverage: number;
  readonly alpha: number;
  readonly control: string;
  readonly phases: PhaseResult[];
  /** Guardrails judged on the current phase, as the evaluation job sees them. */
  readonly guardrails: GuardrailCheck[];
  /** Probe experiments: per-agent quality elasticity and the critical path (current phase). */
  readonly criticalPath?: Elasticity[];
  readonly state: ExperimentState;
}

export interface EvaluationOutcome {
  readonly experiment: string;
  readonly action: 'none' | 'rolled_back' | 'ramped' | 'srm_flagged' | 'new_phase' | 'skipped';
  readonly detail?: string;
}

/** The arms of a phase (the current one unless given), with their weights and the strategy each served. */
function variantWeights(doc: ExperimentDoc, phase = doc.state.phase): Variant[] {
  // A holdout's two populations: units in the holdout (the strategy it froze) vs the exposed rest of the eligible
  // units, who got the pipeline default of that phase.
  if (doc.type === 'holdout') {
    const held = heldStrategy(doc);
    const exposed = doc.state.holdoutPhases?.find((h) => h.phase === phase)?.exposedDefault ?? (phase === doc.state.phase ? doc.state.exposedDefault : undefined) ?? held;
    // The split of that phase: a coverage change starts a new phase (entries recorded before coverage was: the current).
    const coverage = (phase === doc.state.phase ? undefined : doc.state.holdoutPhases?.find((h) => h.phase === phase)?.coverage) ?? doc.coverage;
    return [
      { name: 'holdout', strategy: held, weight: coverage },
      { name: 'exposed', strategy: exposed, weight: 1 - coverage },
    ];
  }
  if (phase === doc.state.phase) return doc.variants;
  // An earlier phase ran with the assignment recorded when it ended (documents from before it was recorded: the current one).
  return doc.state.earlierPhases?.find((p) => p.phase === phase)?.variants.map((v) => ({ ...v })) ?? doc.variants;
}

/** The control of a phase (an earlier phase of an ab experiment may have had another). */
function phaseControl(doc: ExperimentDoc, phase: number): string {
  if (phase === doc.state.phase || doc.type === 'holdout') return doc.control;
  return doc.state.earlierPhases?.find((p) => p.phase === phase)?.control ?? doc.control;
}

/** A holdout's next phase: the exposed population now gets `exposedDefault` (the held-out units keep theirs). */
function nextHoldoutPhase(doc: ExperimentDoc, exposedDefault: string, now: number, cause: string): ExperimentDoc {
  const s = doc.state;
  const phase = s.phase + 1;
  return {
    ...doc,
    state: {
      ...s,
      phase,
      phaseStartedAt: now,
      exposedDefault,
      holdoutPhases: [...(s.holdoutPhases ?? []), { phase, startedAt: now, held: heldStrategy(doc), exposedDefault, coverage: doc.coverage, cause }],
    },
  };
}

/**
 * The delete of a strategy a probe generated, at the version read: only while it still is the probe's cut (kind
 * probe-cut on the probe's pipeline); one replaced since (PUT /v1/strategies) is someone else's and stays.
 */
function ownProbeStrategy(st: ExperimentsState, probe: ExperimentDoc, id: string): DocWrite[] {
  const s = st.strategies.get(id);
  if (!s || s.kind !== 'probe-cut' || s.pipeline !== probe.pipeline) return [];
  return [{ kind: 'strategies', id, doc: null, expectedVersion: s.version }];
}

/** The current phase's SRM flag when it still holds the ramp (not acknowledged). */
export function pendingSrm(s: ExperimentState): SrmFlag | undefined {
  return s.srm && s.srm.phase === s.phase && !s.srm.acknowledged ? s.srm : undefined;
}

/**
 * Experiments: definition, lifecycle (draft → running → paused → stopped; rollback; promote), results
 * and the periodic evaluation (guardrails, SRM, ramps). Every change is one optimistic, audited write of
 * the control plane, followed by a snapshot refresh (read-your-writes).
 */
/** Raw observations an analysis reads per arm and phase (the newest; moments always cover every outcome). */
export const RESULT_OBSERVATIONS_MAX = 20_000;
const OBSERVATION_PAGE = 2000;

const ObservationHead = [Type.Number(), Type.Union([Type.Number(), Type.Null()]), Type.Array(Type.String()), Type.Array(Type.String())] as const;
const Cut = Type.Tuple([Type.Number(), Type.Number()]);
/**
 * One observation as the experiment arm's sink writes it (src/rollout/arms.ts): quality, cost, truncated, hit, a
 * probe's cut or null, the agents that reported usage, the unit's bucket or null; and the shorter forms written before
 * (without the bucket; without the reported agents; the cut only on a probe's arm).
 */
const decodeObservation = jsonDecoder(
  Type.Union([
    Type.Tuple([...ObservationHead]),
    Type.Tuple([...ObservationHead, Cut]),
    Type.Tuple([...ObservationHead, Type.Union([Cut, Type.Null()]), Type.Array(Type.String())]),
    Type.Tuple([...ObservationHead, Type.Union([Cut, Type.Null()]), Type.Array(Type.String()), Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])]),
  ]),
);

/**
 * The newest `max` observations of an arm (newest first), read in pages of 2,000 rather than one LRANGE of the
 * whole list: a results request holds Redis for one page at a time and its memory is bounded by `max`.
 */
export async function readObservations(redis: Redis, key: string, max = RESULT_OBSERVATIONS_MAX): Promise<Observation[]> {
  const out: Observation[] = [];
  for (let from = 0; from < max; from += OBSERVATION_PAGE) {
    const page = await redis.lrange(key, from, Math.min(max, from + OBSERVATION_PAGE) - 1);
    for (const line of page) {
      const o = decodeObservation(line);
      if (o) out.push(o); // an unreadable entry is skipped
    }
    if (page.length < OBSERVATION_PAGE) break;
  }
  return out;
}

export class ExperimentService {
  constructor(
    private readonly deps: {
      readonly store: ExperimentStore;
      readonly redis: Redis;
      readonly keys: Keys;
      readonly view: () => ControlView;
      readonly refresh: () => Promise<void>;
      readonly log: Logger;
      readonly now?: () => number;
    },
  ) {}

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** Read-modify-write with retries; `fn` returns the writes (or null for "nothing to do"). */
  private async mutate(
    id: string,
    action: string,
    by: string,
    fn: (st: ExperimentsState, cur: Versioned<ExperimentDoc> | undefined, now: number) => { docs: DocWrite[]; details?: unknown; guards?: string[] } | null,
  ): Promise<number | undefined> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const st = await this.deps.store.read();
      const now = this.now();
      const w = fn(st, st.experiments.get(id), now);
      if (!w) return undefined;
      const audit: AuditEntry = { at: now, by, action, ...(w.details !== undefined ? { details: w.details } : {}) };
      try {
        const v = await this.deps.store.write(st, id, w.docs, guardsOf(st, w.docs, w.guards), audit);
        await this.deps.refresh();
        return v;
      } catch (e) {
        if (!(e instanceof WriteConflict)) throw e;
        // Jittered backoff so that writers racing for the same experiment or layer spread out.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * 2 ** attempt)));
      }
    }
    throw new AppError('CONCURRENT_MODIFICATION', `params/id: experiment "${id}" kept changing; retry`);
  }

  private found(id: string, cur: Versioned<ExperimentDoc> | undefined): Versioned<ExperimentDoc> {
    if (!cur) throw new AppError('EXPERIMENT_NOT_FOUND', `params/id: no experiment "${id}"`);
    return cur;
  }

  private expWrite(id: string, cur: Versioned<ExperimentDoc> | undefined, doc: ExperimentDoc | null): DocWrite {
    return { kind: 'experiments', id, doc, expectedVersion: cur?.version ?? 0 };
  }

  async put(id: string, body: ExperimentBody, by: string): Promise<Record<string, unknown>> {
    let written: ExperimentDoc | undefined;
    // A ramp added to a started experiment begins at its first step now: its minSamples count the outcomes from here,
    // so the phase's outcomes so far are read first (the write applies only on the version they were read for).
    const snap = this.deps.view().raw.kinds.experiments.get(id) as Versioned<ExperimentDoc> | undefined;
    const rampAdded = !!body.ramp && !!snap && snap.doc.state.status !== 'draft' && !snap.doc.ramp && snap.doc.state.rampStep === undefined;
    const before = rampAdded ? await this.phaseTotal(id, snap!.doc) : undefined;
    const version = await this.mutate(id, 'put', by, (st, cur, now) => {
      let n = normalizeExperiment(id, body, st, now);
      if (before !== undefined && cur?.version === snap!.version && !n.newPhase && n.doc.state.rampStep === 0 && n.doc.state.stepStartSamples === undefined) {
        n = { ...n, doc: { ...n.doc, state: { ...n.doc.state, stepStartSamples: before } } };
      }
      written = n.doc;
      const docs: DocWrite[] = [this.expWrite(id, cur, n.doc)];
      // A probe's generated strategies: created (none may exist by then) or rewritten at the version read.
      for (const s of n.strategies) docs.push({ kind: 'strategies', id: s.id, doc: s.doc, expectedVersion: st.strategies.get(s.id)?.version ?? 0 });
      // A draft probe replaced with fewer agents leaves no generated strategy behind (a started one keeps its cuts).
      if (cur?.doc.type === 'probe') {
        for (const x of cur.doc.variants.slice(1)) {
          if (!n.doc.variants.some((y) => y.strategy === x.strategy)) docs.push(...ownProbeStrategy(st, cur.doc, x.strategy));
        }
      }
      // The pipeline and the variants' strategies it was validated against must be unchanged when it applies (a
      // strategy deleted meanwhile would leave a variant serving the fallback).
      const pipeline = st.pipelines.get(n.doc.pipeline);
      if (pipeline) docs.push({ kind: 'pipelines', id: pipeline.id, doc: null, expectedVersion: pipeline.version, checkOnly: true });
      for (const v of n.doc.variants) {
        const s = st.strategies.get(v.strategy);
        if (s && !n.strategies.some((g) => g.id === s.id)) docs.push({ kind: 'strategies', id: s.id, doc: null, expectedVersion: s.version, checkOnly: true });
      }
      return { docs, details: { body, ...(n.newPhase ? { newPhase: n.doc.state.phase } : {}) } };
    });
    // Read-your-writes from the document written, not the snapshot: a refresh that failed (or lost a race with a
    // concurrent load) must not turn a successful create into a 404.
    if (version === undefined || !written) return this.get(id);
    return experimentView({ id, version, doc: written });
  }

  get(id: string): Record<string, unknown> {
    const v = this.doc(id);
    return experimentView(v);
  }

  doc(id: string): Versioned<ExperimentDoc> {
    const v = this.deps.view().raw.kinds.experiments.get(id) as Versioned<ExperimentDoc> | undefined;
    if (!v) throw new AppError('EXPERIMENT_NOT_FOUND', `params/id: no experiment "${id}"`);
    return v;
  }

  list(pipeline?: string): Record<string, unknown>[] {
    const all = [...(this.deps.view().raw.kinds.experiments as ReadonlyMap<string, Versioned<ExperimentDoc>>).values()];
    return all
      .filter((v) => pipeline === undefined || v.doc.pipeline === pipeline)
      .sort((a, b) => a.id.localeCompare(b.id))
      .map(experimentView);
  }

  async transition(id: string, t: Transition, by: string, reason?: string): Promise<Record<string, unknown>> {
    await this.mutate(id, t, by, (st, cur, now) => {
      const v = this.found(id, cur);
      const s = v.doc.state;
      const rule = TRANSITIONS[t];
      if (!rule.from.includes(s.status)) {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: cannot ${t} experiment "${id}" while it is ${s.status}`);
      }
      let state: ExperimentState = { ...s, status: rule.to };
      if (t === 'start') {
        state = {
          ...state,
          startedAt: now,
          phaseStartedAt: now,
          ...(v.doc.ramp ? { rampStep: 0, stepStartedAt: now, stepStartSamples: 0 } : {}),
        };
      }
      if (t === 'stop') state = { ...state, endedAt: now };
      let doc: ExperimentDoc = { ...v.doc, state };
      let pipelineCheck: DocWrite | undefined;
      if (t === 'start' && v.doc.type === 'holdout') {
        // What the holdout holds out is the default at start, frozen until it ends.
        const p = st.pipelines.get(v.doc.pipeline);
        if (!p) throw new AppError('PIPELINE_NOT_FOUND', `params/id: pipeline "${v.doc.pipeline}" of experiment "${id}" no longer exists`);
        const d = p.defaultStrategy;
        // The default it freezes must still be the pipeline's when it applies (a promote writes the pipeline).
        pipelineCheck = { kind: 'pipelines', id: p.id, doc: null, expectedVersion: p.version, checkOnly: true };
        doc = {
          ...doc,
          variants: v.doc.variants.map((x) => ({ ...x, strategy: d })),
          state: { ...state, exposedDefault: d, holdoutPhases: [{ phase: state.phase, startedAt: now, held: d, exposedDefault: d, coverage: v.doc.coverage, cause: 'start' }] },
        };
      }
      return { docs: [this.expWrite(id, v, doc), ...(pipelineCheck ? [pipelineCheck] : [])], details: { from: s.status, to: rule.to, ...(reason ? { reason } : {}) } };
    });
    return this.get(id);
  }

  /** The kill switch: every unit of the experiment goes to control at once. */
  async rollback(id: string, by: string, reason: string, details?: unknown, expectedVersion?: number): Promise<Record<string, unknown>> {
    await this.mutate(id, 'rollback', by, (_st, cur, now) => {
      const v = this.found(id, cur);
      if (expectedVersion !== undefined && v.version !== expectedVersion) return null;
      const s = v.doc.state;
      if (s.status !== 'running' && s.status !== 'paused') {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: cannot roll back experiment "${id}" while it is ${s.status}`);
      }
      const state: ExperimentState = { ...s, status: 'rolled_back', endedAt: now, rollback: { reason, at: now, by, ...(details !== undefined ? { details } : {}) } };
      return { docs: [this.expWrite(id, v, { ...v.doc, state })], details: { from: s.status, reason, ...(details !== undefined ? { evidence: details } : {}) } };
    });
    return this.get(id);
  }

  /**
   * Makes the variant's strategy the pipeline default and ends the experiment, in one change. Allowed while
   * running or paused, and after a rollback (the operator may still ship a variant, e.g. once the page that
   * triggered a manual rollback proved unrelated); after a rollback by a guardrail only with `force`, since
   * the data said the variant is worse. The pipeline's holdout, if any, starts a new phase in the same
   * write: its held-out units keep what they had, the exposed ones get the new default.
   */
  async promote(id: string, variant: string, by: string, force = false): Promise<Record<string, unknown>> {
    await this.mutate(id, 'promote', by, (st, cur, now) => {
      const v = this.found(id, cur);
      if (v.doc.type !== 'ab') throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: a ${v.doc.type} experiment has nothing to promote`);
      const s = v.doc.state;
      if (s.status !== 'running' && s.status !== 'paused' && s.status !== 'rolled_back') {
        const promoted = s.promoted ? ` (variant "${s.promoted.variant}" was promoted)` : '';
        throw new AppError(
          'EXPERIMENT_STATE_CONFLICT',
          `params/id: experiment "${id}" has ended (${s.status})${promoted}; set the pipeline's defaultStrategy with PUT /v1/pipelines/${v.doc.pipeline}, or start a new experiment`,
        );
      }
      if (s.status === 'rolled_back' && s.rollback?.by.startsWith('system:') && !force) {
        throw new AppError(
          'EXPERIMENT_STATE_CONFLICT',
          `params/id: experiment "${id}" was rolled back by ${s.rollback.by} (${s.rollback.reason}); to promote "${variant}" anyway send { "variant": "${variant}", "force": true } (CLI: --force)`,
        );
      }
      const chosen = v.doc.variants.find((x) => x.name === variant);
      if (!chosen) throw new AppError('UNKNOWN_VARIANT', `body/variant: experiment "${id}" has no variant "${variant}"`);
      const p = st.pipelines.get(v.doc.pipeline);
      if (!p) throw new AppError('PIPELINE_NOT_FOUND', `params/id: pipeline "${v.doc.pipeline}" of experiment "${id}" no longer exists`);
      const pipelineDoc = p.withDefaultStrategy(chosen.strategy);
      const state: ExperimentState = { ...s, status: 'stopped', endedAt: now, promoted: { variant, strategy: chosen.strategy, at: now } };
      const docs: DocWrite[] = [this.expWrite(id, v, { ...v.doc, state }), { kind: 'pipelines', id: p.id, doc: pipelineDoc, expectedVersion: p.version }];
      const previous = p.defaultStrategy;
      const holdout = [...st.experiments.values()].find(
        (e) => e.doc.type === 'holdout' && e.doc.pipeline === v.doc.pipeline && (e.doc.state.status === 'running' || e.doc.state.status === 'paused'),
      );
      let holdoutPhase: { id: string; phase: number } | undefined;
      if (holdout && (holdout.doc.state.exposedDefault ?? previous) !== chosen.strategy) {
        checkPhaseCap(holdout.id, holdout.doc.state, 'params/id', `promoting "${variant}" would start another phase of holdout "${holdout.id}": stop the holdout (and create a new one) first`);
        const next = nextHoldoutPhase(holdout.doc, chosen.strategy, now, `promote of ${id}/${variant}`);
        docs.push(this.expWrite(holdout.id, holdout, next));
        holdoutPhase = { id: holdout.id, phase: next.state.phase };
      }
      return {
        docs,
        // The holdout found (or not) above: a holdout created, started or ended meanwhile moves this guard.
        guards: [holdoutGuard(v.doc.pipeline)],
        details: {
          variant,
          strategy: chosen.strategy,
          previousDefault: previous,
          ...(s.status === 'rolled_back' ? { afterRollback: s.rollback, ...(force ? { force } : {}) } : {}),
          ...(holdoutPhase ? { holdoutNewPhase: holdoutPhase } : {}),
        },
      };
    });
    return this.get(id);
  }

  /**
   * An operator's acknowledgement of the current phase's SRM flag, with the reason (audited): the ramp may
   * continue, and the sequential test starts afresh on the outcomes after this point, so a mismatch that
   * persists is flagged again.
   */
  async acknowledgeSrm(id: string, by: string, reason: string): Promise<Record<string, unknown>> {
    const snap = this.doc(id).doc;
    const { arms } = await this.readArms(id, snap, snap.state.phase, false);
    await this.mutate(id, 'srm_acknowledged', by, (_st, cur, now) => {
      const v = this.found(id, cur);
      const s = v.doc.state;
      if (s.status !== 'running' && s.status !== 'paused') {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: experiment "${id}" is ${s.status}; only a running or paused experiment's SRM flag can be acknowledged`);
      }
      if (!s.srm || s.srm.phase !== s.phase) {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: experiment "${id}" has no sample-ratio-mismatch flag in its current phase (${s.phase})`);
      }
      if (s.srm.acknowledged) {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: the SRM flag of experiment "${id}" was already acknowledged by ${s.srm.acknowledged.by} at ${new Date(s.srm.acknowledged.at).toISOString()}`);
      }
      // Counts were read for the snapshot's phase; a phase change since then fails the check above.
      const { counts, basis } = srmCounts(variantWeights(v.doc), arms);
      const srm: SrmFlag = { ...s.srm, acknowledged: { by, at: now, reason, counts, basis } };
      return { docs: [this.expWrite(id, v, { ...v.doc, state: { ...s, srm } })], details: { reason, phase: s.phase, pValue: s.srm.pValue, flaggedCounts: s.srm.counts, counts, basis } };
    });
    return this.get(id);
  }

  /**
   * Deletes a draft or ended experiment and its statistics (so an experiment created later under the same
   * id starts from nothing). The audit trail is kept, ending with the delete.
   */
  async delete(id: string, by: string): Promise<void> {
    let deleted: ExperimentDoc | undefined;
    await this.mutate(id, 'delete', by, (st, cur) => {
      const v = this.found(id, cur);
      deleted = v.doc;
      if (v.doc.state.status === 'running' || v.doc.state.status === 'paused' || v.doc.state.status === 'rolled_back') {
        throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: stop experiment "${id}" before deleting it`);
      }
      const docs: DocWrite[] = [this.expWrite(id, v, null)];
      if (v.doc.type === 'probe') for (const x of v.doc.variants.slice(1)) docs.push(...ownProbeStrategy(st, v.doc, x.strategy));
      return { docs };
    });
    if (deleted) {
      const d = deleted;
      // Its audit trail was deleted with it (rollout-write.lua); the log keeps who deleted it.
      this.deps.log.info({ experiment: id, pipeline: d.pipeline, by }, 'experiment deleted');
      const keys: string[] = [];
      for (let phase = 0; phase <= d.state.phase; phase++) {
        for (const x of variantWeights(d, phase)) {
          const arm = experimentArm(this.deps.keys, d.pipeline, id, d.generation, phase, x.name);
          keys.push(arm.summary, arm.agents, arm.obs, arm.units.bitmap, arm.units.buckets);
        }
      }
      await this.deps.redis.del(...keys); // all in the pipeline's slot
    }
  }

  audit(id: string, limit?: number): Promise<AuditEntry[]> {
    this.doc(id);
    return this.deps.store.auditTrail(id, limit);
  }

  /** Outcomes of the experiment's current phase, every arm together. */
  private async phaseTotal(id: string, doc: ExperimentDoc): Promise<number> {
    const { arms } = await this.readArms(id, doc, doc.state.phase, false);
    return [...arms.values()].reduce((t, a) => t + a.count, 0);
  }

  private async readArms(id: string, doc: ExperimentDoc, phase: number, withObs: boolean): Promise<{ arms: Map<string, ArmStats>; obs: Map<string, Observation[]> }> {
    const variants = variantWeights(doc, phase);
    const m = this.deps.redis.multi();
    for (const v of variants) {
      const arm = experimentArm(this.deps.keys, doc.pipeline, id, doc.generation, phase, v.name);
      m.hgetall(arm.summary);
      m.hgetallBuffer(arm.agents);
      m.hgetallBuffer(arm.units.buckets);
    }
    const res = (await m.exec()) ?? [];
    const arms = new Map<string, ArmStats>();
    const obs = new Map<string, Observation[]>();
    variants.forEach((v, i) => {
      const get = (k: number): unknown => {
        const r = res[i * 3 + k];
        if (!r || r[0]) throw r?.[0] ?? new Error('stats read: missing reply');
        return r[1];
      };
      arms.set(v.name, parseArmStats(get(0) as Record<string, string>, get(1) as Record<string, Buffer>, get(2) as Record<string, Buffer>));
    });
    if (withObs) {
      await Promise.all(
        variants.map(async (v) => obs.set(v.name, await readObservations(this.deps.redis, experimentArm(this.deps.keys, doc.pipeline, id, doc.generation, phase, v.name).obs))),
      );
    }
    return { arms, obs };
  }

  async results(id: string, opts: ResultsOptions = {}): Promise<ExperimentResults> {
    const v = this.doc(id);
    const doc = v.doc;
    const alpha = doc.alpha ?? 0.05;
    const variants = variantWeights(doc);
    const phases: PhaseResult[] = [];
    let current: Map<string, ArmStats> | undefined;
    let currentObs: Map<string, Observation[]> | undefined;
    for (let phase = 0; phase <= doc.state.phase; phase++) {
      const { arms, obs } = await this.readArms(id, doc, phase, true);
      if (phase === doc.state.phase) {
        current = arms;
        currentObs = obs;
      }
      phases.push(analyzePhase({ phase, variants: variantWeights(doc, phase), control: phaseControl(doc, phase), alpha, arms, obs, ...(opts.winsorize !== undefined ? { winsorize: opts.winsorize } : {}) }));
    }
    const arms = current ?? new Map<string, ArmStats>();
    const out: ExperimentResults = {
      experiment: id,
      pipeline: doc.pipeline,
      type: doc.type,
      status: doc.state.status,
      phase: doc.state.phase,
      effectiveCoverage: effectiveCoverage(doc),
      alpha,
      control: doc.control,
      phases,
      guardrails: checkGuardrails(doc.guardrails ?? [], variants, doc.control, arms, alpha),
      ...(doc.type === 'probe'
        ? {
            criticalPath: elasticities(
              doc.variants.slice(1).map((x) => ({ agent: x.name.slice(probeVariantName('').length), variant: x.name })),
              doc.control,
              arms,
              alpha,
              currentObs,
            ),
          }
        : {}),
      state: doc.state,
    };
    return out;
  }

  /**
   * One evaluation of a running experiment: guardrails (breach → automatic rollback, with the evidence),
   * the SRM check (flag once per phase), then the ramp (advance one step when its minimum time and
   * sample have passed and no SRM is flagged). Writes only when something changes, and only if the
   * experiment did not change since it was read (else the next cycle sees the new state).
   */
  async evaluate(id: string): Promise<EvaluationOutcome> {
    const v = this.doc(id);
    const doc = v.doc;
    if (doc.state.status !== 'running') return { experiment: id, action: 'skipped' };
    if (doc.type === 'holdout') return this.evaluateHoldout(v);
    const alpha = doc.alpha ?? 0.05;
    const variants = variantWeights(doc);
    const { arms } = await this.readArms(id, doc, doc.state.phase, false);
    const checks = checkGuardrails(doc.guardrails ?? [], variants, doc.control, arms, alpha);
    const breach = checks.find((c) => c.breached);
    if (breach) {
      const g = breach.guardrail;
      const reason =
        `guardrail ${g.metric}${g.agent ? `:${g.agent}` : ''} breached by variant ${breach.variant}: ` +
        `regression ${fmt(breach.regression)} (always-valid ${Math.round((1 - alpha) * 100)}% CI [${fmt(breach.ci?.[0])}, ${fmt(breach.ci?.[1])}]) exceeds tolerance ${fmt(breach.tolerance)}`;
      try {
        const after = await this.rollback(id, 'system:guardrail', reason, breach, v.version);
        // Not written when the experiment changed since it was read: the next cycle judges the new state.
        if ((after.state as ExperimentState).status !== 'rolled_back') return { experiment: id, action: 'skipped', detail: 'changed concurrently' };
      } catch (e) {
        if (e instanceof AppError && e.code === 'EXPERIMENT_STATE_CONFLICT') return { experiment: id, action: 'skipped', detail: e.message };
        throw e;
      }
      this.deps.log.warn({ experiment: id, reason }, 'experiment rolled back by a guardrail');
      return { experiment: id, action: 'rolled_back', detail: reason };
    }
    // Ramp steps count outcomes; the SRM test counts units (srmCounts).
    const phaseTotal = variants.reduce((t, x) => t + (arms.get(x.name)?.count ?? 0), 0);
    const flagged = await this.checkSrm(v, variants, srmCounts(variants, arms));
    if (flagged) return flagged;
    const steps = doc.ramp?.steps;
    const step = doc.state.rampStep ?? 0;
    if (steps && step < steps.length - 1 && !pendingSrm(doc.state)) {
      const cur = steps[step]!;
      const now = this.now();
      const since = now - (doc.state.stepStartedAt ?? doc.state.startedAt ?? now);
      const samples = phaseTotal - (doc.state.stepStartSamples ?? 0);
      if (since >= (cur.minDurationSec ?? 0) * 1000 && samples >= (cur.minSamples ?? 0)) {
        const written = await this.patchState(
          id,
          v.version,
          'system:ramp',
          'ramp',
          (s, at) => ({ ...s, rampStep: step + 1, stepStartedAt: at, stepStartSamples: phaseTotal }),
          { from: cur.share, to: steps[step + 1]!.share, samples, elapsedMs: since },
        );
        return { experiment: id, action: written ? 'ramped' : 'skipped', detail: `step ${step + 1}: ${steps[step + 1]!.share}` };
      }
    }
    return { experiment: id, action: 'none' };
  }

  /**
   * The SRM check of one evaluation: the sequential test (valid however often the job looks) on the
   * current phase's outcome counts — since the last acknowledgement, when the flag was acknowledged. An
   * unacknowledged flag is not re-tested: it holds until an operator acknowledges it.
   */
  private async checkSrm(v: Versioned<ExperimentDoc>, variants: readonly Variant[], { counts, basis }: { counts: readonly number[]; basis: 'units' | 'outcomes' }): Promise<EvaluationOutcome | undefined> {
    const s = v.doc.state;
    if (pendingSrm(s)) return undefined;
    // Counts acknowledged on another basis (outcomes, before units were counted) say nothing of the unit counts: the
    // test then runs on every unit counted in the phase.
    const ack = s.srm && s.srm.phase === s.phase ? s.srm.acknowledged : undefined;
    const base = ack && (ack.basis ?? 'outcomes') === basis ? ack.counts : undefined;
    const since = counts.map((c, i) => Math.max(0, c - (base?.[i] ?? 0)));
    const r = srmSequential(since, variants.map((x) => x.weight));
    if (!r?.mismatch) return undefined;
    const written = await this.patchState(v.id, v.version, 'system:srm', 'srm_flagged', (st, now) => ({ ...st, srm: { phase: st.phase, pValue: r.pValue, flaggedAt: now, counts, basis } }), {
      counts,
      basis,
      ...(base ? { sinceAcknowledged: since } : {}),
      pValue: r.pValue,
      logBayesFactor: r.logBayesFactor,
      alpha: r.alpha,
    });
    return { experiment: v.id, action: written ? 'srm_flagged' : 'skipped', detail: `sequential p = ${r.pValue.toExponential(2)} < ${r.alpha}` };
  }

  /**
   * A running holdout: a new phase when the pipeline default changed outside a promote (meanwhile the
   * router counts neither population), then the SRM check of held-out vs exposed counts.
   */
  private async evaluateHoldout(v: Versioned<ExperimentDoc>): Promise<EvaluationOutcome> {
    const id = v.id;
    const doc = v.doc;
    const p = this.deps.view().pipelines.get(doc.pipeline);
    const dflt = p?.defaultStrategy ?? BUILTIN_UNIFORM_ID;
    if (p && doc.state.exposedDefault !== undefined && doc.state.exposedDefault !== dflt) {
      const from = doc.state.exposedDefault;
      const written = await this.mutate(id, 'new_phase', 'system:holdout', (_st, cur, now) => {
        if (!cur || cur.version !== v.version || cur.doc.state.status !== 'running') return null;
        checkPhaseCap(id, cur.doc.state, 'params/id', `the pipeline default changed from ${from} to ${dflt}, which would start another; stop the holdout (and create a new one)`);
        return { docs: [this.expWrite(id, cur, nextHoldoutPhase(cur.doc, dflt, now, `pipeline default changed from ${from} to ${dflt}`))], details: { from, to: dflt, phase: cur.doc.state.phase + 1 } };
      });
      return { experiment: id, action: written !== undefined ? 'new_phase' : 'skipped', detail: `exposed default ${from} → ${dflt}` };
    }
    const variants = variantWeights(doc);
    const { arms } = await this.readArms(id, doc, doc.state.phase, false);
    return (await this.checkSrm(v, variants, srmCounts(variants, arms))) ?? { experiment: id, action: 'none' };
  }

  private async patchState(id: string, version: number, by: string, action: string, f: (s: ExperimentState, now: number) => ExperimentState, details: unknown): Promise<boolean> {
    const v = await this.mutate(id, action, by, (_st, cur, now) => {
      if (!cur || cur.version !== version || cur.doc.state.status !== 'running') return null;
      return { docs: [this.expWrite(id, cur, { ...cur.doc, state: f(cur.doc.state, now) })], details };
    });
    return v !== undefined;
  }

  /** Evaluates every running experiment; one failing never stops the others. */
  async evaluateAll(): Promise<EvaluationOutcome[]> {
    const ids = [...(this.deps.view().raw.kinds.experiments as ReadonlyMap<string, Versioned<ExperimentDoc>>).values()]
      .filter((v) => v.doc.state.status === 'running')
      .map((v) => v.id);
    const out: EvaluationOutcome[] = [];
    for (const id of ids) {
      try {
        out.push(await this.evaluate(id));
      } catch (e) {
        this.deps.log.error({ err: e, experiment: id }, 'experiment evaluation failed');
      }
    }
    return out;
  }
}

function fmt(x: number | undefined): string {
  if (x === undefined) return '?';
  return Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4) : x.toExponential(2);
}
