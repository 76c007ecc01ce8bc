import { AppError } from '../errors/app-error.js';
import type { Versioned } from '../control/store.js';
import { MAX_ID_LENGTH } from '../pipelines/schema.js';
import type { PipelineRef } from '../pipelines/service.js';
import type { StrategyRef } from '../strategies/service.js';
import { BUILTIN_UNIFORM_ID } from '../strategies/schema.js';
import { ARM_KEY_SUFFIXES } from './arms.js';
import { HASH_VERSION } from './bucketing.js';
import type { EarlierPhase, ExperimentBody, ExperimentDoc, ExperimentState, Variant } from './schema.js';
import { targetingProblems } from './targeting.js';

export const DEFAULT_ALPHA = 0.05;
/**
 * Phases an experiment may have: each phase's assignment is kept in its document (`state.earlierPhases`) so its
 * results are read with what it served, and the document every process holds stays small. A change that would start
 * one more is refused: create a new experiment.
 */
export const MAX_PHASES = 50;

/**
 * Refuses a change that would start phase MAX_PHASES + 1 of experiment `id` (409 EXPERIMENT_STATE_CONFLICT naming
 * `field`, with `remedy`). Every path that starts a phase checks it: a PUT that changes the assignment, a promote that
 * starts the pipeline holdout's next phase, the job's new holdout phase after a default changed another way.
 */
export function checkPhaseCap(id: string, state: ExperimentState, field: string, remedy: string): void {
  if (state.phase + 1 >= MAX_PHASES) {
    throw new AppError('EXPERIMENT_STATE_CONFLICT', `${field}: experiment "${id}" has had ${MAX_PHASES} phases, the most one experiment keeps; ${remedy}`);
  }
}

/** What validation needs to know about the rest of the control plane (a fresh read, not the snapshot). */
export interface ModelContext {
  /** Pipelines and strategies as their domains read them, never their raw documents. */
  readonly pipelines: ReadonlyMap<string, PipelineRef>;
  readonly strategies: ReadonlyMap<string, StrategyRef>;
  readonly experiments: ReadonlyMap<string, Versioned<ExperimentDoc>>;
  /** The experiments write sequence read: a new experiment's generation is the sequence its creating write makes. */
  readonly seq: number;
}

export const isEnded = (s: ExperimentState): boolean => s.status === 'stopped' || s.status === 'rolled_back';

/** Id of the strategy that cuts `agent` in probe experiment `id`. */
export const probeStrategyId = (id: string, agent: string): string => `probe.${id}.${agent}`;
export const probeVariantName = (agent: string): string => `cut.${agent}`;

const bad = (msg: string): AppError => new AppError('INVALID_EXPERIMENT', msg);

/** Share of the coverage exposed now: the current ramp step, or everything without a ramp. */
export { effectiveCoverage, rampShare } from '@apportion/sdk/engine';
import { effectiveCoverage, rampShare } from '@apportion/sdk/engine';

function sameAssignment(a: ExperimentDoc, b: { variants: readonly Variant[]; seed: string; control: string }): boolean {
  if (a.seed !== b.seed || a.control !== b.control || a.variants.length !== b.variants.length) return false;
  return a.variants.every((v, i) => {
    const w = b.variants[i]!;
    return v.name === w.name && v.strategy === w.strategy && v.weight === w.weight;
  });
}

export interface Normalized {
  readonly doc: ExperimentDoc;
  /** Strategies to create with the experiment (probe cuts). */
  readonly strategies: readonly { id: string; doc: Record<string, unknown> }[];
  /** True when this change starts a new phase. */
  readonly newPhase: boolean;
}

/** What each experiment type decides: its arms and control, and the strategies to create with it. */
interface Arms {
  readonly variants: Variant[];
  readonly control: string;
  readonly strategies: readonly { id: string; doc: Record<string, unknown> }[];
}

/** The context of one PUT shared by the checks below. */
interface Put {
  readonly id: string;
  readonly body: ExperimentBody;
  readonly ctx: ModelContext;
  readonly existing: ExperimentDoc | undefined;
  /** Whether the stored experiment has started (a started one keeps what it froze at start). */
  readonly started: boolean;
  readonly agents: readonly string[];
  readonly dflt: string;
}

/**
 * Validates a PUT body against the control plane and returns the document to store (pure). Throws
 * AppError naming the field. Keeps the existing state; starts a new phase when a started experiment's
 * assignment (variants, weights, seed, control) changes, so results of the two configurations never mix.
 */
export function normalizeExperiment(id: string, body: ExperimentBody, ctx: ModelContext, now: number): Normalized {
  const pipeline = ctx.pipelines.get(body.pipeline);
  if (!pipeline) throw new AppError('PIPELINE_NOT_FOUND', `body/pipeline: no pipeline "${body.pipeline}"`);
  const existing = ctx.experiments.get(id)?.doc;
  const type = body.type ?? 'ab';
  if (existing) checkReplace(id, body, existing, type);
  const put: Put = { id, body, ctx, existing, started: !!existing && existing.state.status !== 'draft', agents: pipeline.agents, dflt: pipeline.defaultStrategy };
  const { variants, control, strategies } = type === 'ab' ? abArms(put) : type === 'holdout' ? holdoutArms(put) : probeArms(put);
  // A holdout's and a probe's control is the arm they generate: another name in the body would be silently ignored.
  if (type !== 'ab' && body.control !== undefined && body.control !== control) {
    throw bad(`body/control: a ${type}'s control is its "${control}" arm; leave control out (or set it to "${control}")`);
  }
  checkLayer(put);
  checkSettings(put);

  const seed = body.seed ?? id;
  const coverage = body.coverage ?? 1;
  // A holdout's coverage is its split (held out : exposed): changing it moves units between the two populations.
  const coverageMoved = type === 'holdout' && put.started && existing!.coverage !== coverage;
  const newPhase = put.started && (!sameAssignment(existing!, { variants, seed, control }) || coverageMoved);
  if (newPhase) checkPhaseCap(id, existing!.state, 'body/variants', 'stop it and create a new one for this assignment');
  // A new experiment (or an id created again after a delete) is a new generation; a replace keeps the stored one.
  const generation = existing ? existing.generation : ctx.seq + 1;
  const doc: ExperimentDoc = {
    ...(generation !== undefined ? { generation } : {}),
    pipeline: body.pipeline,
    type,
    ...(body.description !== undefined ? { description: body.description } : {}),
    variants,
    control,
    coverage,
    ...(body.targeting ? { targeting: body.targeting } : {}),
    ...(body.layer ? { layer: body.layer } : {}),
    seed,
    hashVersion: existing?.hashVersion ?? HASH_VERSION,
    guardrails: body.guardrails ?? [],
    ...(body.ramp ? { ramp: body.ramp } : {}),
    alpha: body.alpha ?? DEFAULT_ALPHA,
    ...(body.probe ? { probe: body.probe } : {}),
    state: nextState(existing, newPhase, now, body.ramp?.steps.length ?? 0),
  };
  if (put.started) checkExposureKept(id, existing!, doc);
  if (newPhase && type === 'holdout') {
    const cause = coverageMoved ? `coverage changed from ${existing!.coverage} to ${coverage}` : `seed changed from ${existing!.seed} to ${seed}`;
    return { doc: nextHoldoutPhaseOnPut(existing!, doc, now, cause), strategies, newPhase };
  }
  return { doc, strategies, newPhase };
}

const percent = (x: number): string => `${Number((x * 100).toPrecision(4))} %`;

/**
 * A replace of a started experiment may lower the share of eligible units it exposes (coverage × the current ramp
 * step's share) only by lowering `coverage`, the explicit way to ramp down: a ramp added to a running experiment, or
 * one whose current step now shares less, would otherwise move most of its units out of their variants at once (and
 * back in when the job ramps again).
 */
function checkExposureKept(id: string, before: ExperimentDoc, after: ExperimentDoc): void {
  if (after.coverage < before.coverage) return;
  const was = before.coverage * rampShare(before);
  const now = after.coverage * rampShare(after);
  if (now >= was) return;
  const step = Math.min(after.state.rampStep ?? 0, (after.ramp?.steps.length ?? 1) - 1);
  throw new AppError(
    'EXPERIMENT_STATE_CONFLICT',
    `body/ramp/steps/${step}/share: experiment "${id}" exposes ${percent(was)} of its eligible units now; this ramp would expose ${percent(now)} at its step ${step}, ` +
      `moving units out of their variants. A started experiment keeps its exposure: give that step a share of at least ${Number((was / after.coverage).toPrecision(6))}, or lower coverage to ramp down`,
  );
}

/** A replace keeps the experiment's pipeline and type, and an ended experiment stays ended. */
function checkReplace(id: string, body: ExperimentBody, existing: ExperimentDoc, type: ExperimentDoc['type']): void {
  if (existing.pipeline !== body.pipeline) throw bad(`body/pipeline: experiment "${id}" belongs to pipeline "${existing.pipeline}"; create a new experiment`);
  if (existing.type !== type) throw bad(`body/type: experiment "${id}" is of type "${existing.type}"`);
  if (isEnded(existing.state)) throw new AppError('EXPERIMENT_STATE_CONFLICT', `params/id: experiment "${id}" has ended (${existing.state.status}); create a new one`);
}

function abArms({ body, ctx }: Put): Arms {
  if (!body.variants) throw bad('body/variants: an ab experiment needs at least two variants');
  if (body.probe) throw bad('body/probe: only probe experiments take probe settings');
  const variants = body.variants.map((v) => ({ ...v }));
  const names = new Set<string>();
  variants.forEach((v, i) => {
    if (names.has(v.name)) throw bad(`body/variants/${i}/name: variant "${v.name}" appears twice`);
    names.add(v.name);
    if (v.strategy !== BUILTIN_UNIFORM_ID) {
      const s = ctx.strategies.get(v.strategy);
      if (!s) throw new AppError('STRATEGY_NOT_FOUND', `body/variants/${i}/strategy: no strategy "${v.strategy}"`);
      if (s.pipeline !== body.pipeline) {
        throw new AppError('STRATEGY_PIPELINE_MISMATCH', `body/variants/${i}/strategy: strategy "${v.strategy}" belongs to pipeline "${String(s.pipeline)}"`);
      }
    }
  });
  checkArmKeys(variants);
  if (!variants.some((v) => v.weight > 0)) throw bad('body/variants: at least one weight must be positive');
  const control = body.control ?? variants[0]!.name;
  if (!names.has(control)) throw bad(`body/control: no variant named "${control}"`);
  // A guardrail compares each variant with control: with no traffic in control it never judges, so the experiment
  // would ramp and run unguarded while its guardrails show "waiting" forever.
  const c = variants.findIndex((v) => v.name === control);
  if ((body.guardrails?.length ?? 0) > 0 && !(variants[c]!.weight > 0)) {
    throw bad(`body/variants/${c}/weight: control "${control}" has weight 0, so no guardrail could ever compare against it; give it a positive weight (or drop the guardrails)`);
  }
  return { variants, control, strategies: [] };
}

/**
 * An arm's keys are its variant's name followed by a fixed suffix (`src/rollout/arms.ts`), and names may contain ':'
 * (stored experiments use it). So `x` and `x:agents` would share one key, the per-agent sums of `x` and the summary
 * of `x:agents`, each arm's statistics corrupted by the other's: such a set of names is refused, naming the
 * variant that would take the other's key. (Holdouts and probes generate their names, which never clash.)
 */
function checkArmKeys(variants: readonly Variant[]): void {
  const index = new Map(variants.map((v, i) => [v.name, i]));
  variants.forEach((v, i) => {
    for (const suffix of ARM_KEY_SUFFIXES) {
      if (!v.name.endsWith(`:${suffix}`)) continue;
      const other = v.name.slice(0, -suffix.length - 1);
      const j = index.get(other);
      if (j === undefined) continue;
      throw bad(
        `body/variants/${i}/name: variant "${v.name}" would share a statistics key with variant "${other}" (body/variants/${j}/name), whose ` +
          `"${suffix}" key is named "…:${other}:${suffix}"; a variant may not be named after another one followed by ${ARM_KEY_SUFFIXES.map((x) => `":${x}"`).join(', ')}: rename one of them`,
      );
    }
  });
}

function holdoutArms({ id, body, ctx, existing, started, dflt }: Put): Arms {
  if (body.variants) throw bad('body/variants: a holdout has no variants (its units get the pipeline default)');
  if (body.probe) throw bad('body/probe: only probe experiments take probe settings');
  if (body.layer) throw bad('body/layer: a holdout applies before layers and cannot be in one');
  if (body.ramp) throw bad('body/ramp: a holdout is not ramped');
  // A started holdout keeps the strategy it froze at start (what it holds out) until it ends: a later
  // promote changes the pipeline default for everyone else, never for the held-out units.
  const variants =
    started && existing
      ? existing.variants
      : [
          { name: 'holdout', strategy: dflt, weight: 1 },
          { name: 'exposed', strategy: dflt, weight: 0 },
        ];
  for (const [oid, e] of ctx.experiments) {
    if (oid !== id && e.doc.type === 'holdout' && e.doc.pipeline === body.pipeline && e.doc.state.status !== 'stopped') {
      throw new AppError('EXPERIMENT_STATE_CONFLICT', `body/pipeline: pipeline "${body.pipeline}" already has holdout "${oid}"`);
    }
  }
  return { variants, control: 'holdout', strategies: [] };
}

function probeArms({ id, body, ctx, existing, started, agents, dflt }: Put): Arms {
  if (body.variants) throw bad('body/variants: a probe generates its variants (one cut per agent)');
  if (!body.probe) throw bad('body/probe: a probe experiment needs { fraction, agents? }');
  const probe = body.probe;
  const cut = probe.agents ?? agents;
  cut.forEach((a, i) => {
    if (!agents.includes(a)) throw new AppError('UNKNOWN_AGENT', `body/probe/agents/${i}: pipeline "${body.pipeline}" has no agent "${a}"`);
    // One arm per agent: a repeated agent would make two variants of one name, which share one arm's statistics (its
    // outcomes counted for both, the SRM test flagging the doubled count).
    if (cut.indexOf(a) !== i) throw bad(`body/probe/agents/${i}: agent "${a}" appears twice (at ${cut.indexOf(a)} and ${i}); name each agent once`);
  });
  const base = dflt === BUILTIN_UNIFORM_ID ? { kind: 'uniform', params: {} } : ctx.strategies.get(dflt);
  if (!base) throw new AppError('STRATEGY_NOT_FOUND', `body/pipeline: the default strategy "${dflt}" of pipeline "${body.pipeline}" is missing`);
  const baseDef = { id: dflt, kind: base.kind, params: base.params };
  // A running probe keeps the cuts it started with (same base, same fraction): results stay comparable.
  if (started && existing) {
    if (probe.fraction !== existing.probe?.fraction || JSON.stringify(probe.agents ?? null) !== JSON.stringify(existing.probe?.agents ?? null)) {
      throw new AppError('EXPERIMENT_STATE_CONFLICT', 'body/probe: a started probe cannot change its cuts; stop it and create a new one');
    }
    return { variants: existing.variants, control: 'control', strategies: [] };
  }
  const variants: Variant[] = [{ name: 'control', strategy: dflt, weight: 1 }];
  const strategies: { id: string; doc: Record<string, unknown> }[] = [];
  // The strategies this probe generated before (a draft replaced): the only existing ones it may write over.
  const own = new Set(existing?.type === 'probe' ? existing.variants.slice(1).map((v) => v.strategy) : []);
  for (const a of cut) {
    const sid = probeStrategyId(id, a);
    // A generated strategy must be a valid strategy id, readable back (GET /v1/strategies/:id takes ids of up to MAX_ID_LENGTH).
    if (sid.length > MAX_ID_LENGTH) {
      throw bad(`params/id: a probe's strategies are named probe.<experiment>.<agent>; "${sid}" would be ${sid.length} characters, over ${MAX_ID_LENGTH}: use a shorter experiment id`);
    }
    // Strategy ids are global: a strategy someone created under the generated id (maybe another tenant's, maybe a
    // variant of a running experiment) is never overwritten, nor deleted with the probe.
    if (ctx.strategies.has(sid) && !own.has(sid)) {
      throw new AppError('ID_TAKEN', `params/id: a probe's strategies are named probe.<experiment>.<agent>, and strategy "${sid}" already exists: use another experiment id (or delete that strategy)`);
    }
    variants.push({ name: probeVariantName(a), strategy: sid, weight: 1 });
    strategies.push({
      id: sid,
      doc: {
        pipeline: body.pipeline,
        kind: 'probe-cut',
        params: { agent: a, fraction: probe.fraction, base: baseDef },
        description: `critical-path probe ${id}: ${a} at ${probe.fraction} of its budget under ${dflt}`,
      },
    });
  }
  return { variants, control: 'control', strategies };
}

/**
 * A layer's range is ordered and overlaps no other live experiment's range in the same layer. Layers are the
 * tenant's own: only experiments on pipelines of the same owner share one (another tenant's experiments neither
 * block the range nor are named).
 */
function checkLayer({ id, body, ctx }: Put): void {
  const layer = body.layer;
  if (!layer) return;
  if (!(layer.range[0] < layer.range[1])) throw bad('body/layer/range: from must be below to');
  const owner = ctx.pipelines.get(body.pipeline)?.owner;
  // The first overlapping experiment by range start is named, so the answer does not depend on store order.
  const overlapping = [...ctx.experiments]
    .filter(([oid, e]) => {
      const l = e.doc.layer;
      // Drafts reserve their slot; a rolled-back experiment still routes its units to control until stopped.
      if (oid === id || !l || l.id !== layer.id || e.doc.state.status === 'stopped') return false;
      if (ctx.pipelines.get(e.doc.pipeline)?.owner !== owner) return false;
      return layer.range[0] < l.range[1] && l.range[0] < layer.range[1];
    })
    .sort(([a, x], [b, y]) => x.doc.layer!.range[0] - y.doc.layer!.range[0] || (a < b ? -1 : 1));
  if (overlapping.length > 0) {
    const [oid, e] = overlapping[0]!;
    const l = e.doc.layer!;
    throw new AppError('LAYER_OVERLAP', `body/layer/range: [${layer.range.join(', ')}) overlaps experiment "${oid}" [${l.range.join(', ')}) in layer "${l.id}"`);
  }
}

/** Targeting, guardrails (an agent only for ceilingHitRate, and one of the pipeline's) and a non-decreasing ramp. */
function checkSettings({ body, agents }: Put): void {
  const tp = body.targeting ? targetingProblems(body.targeting, 'body/targeting') : [];
  if (tp.length) throw bad(tp[0]!);
  (body.guardrails ?? []).forEach((g, i) => {
    if (g.metric === 'ceilingHitRate') {
      if (!g.agent) throw bad(`body/guardrails/${i}/agent: ceilingHitRate needs an agent`);
      if (!agents.includes(g.agent)) throw new AppError('UNKNOWN_AGENT', `body/guardrails/${i}/agent: pipeline "${body.pipeline}" has no agent "${g.agent}"`);
    } else if (g.agent) throw bad(`body/guardrails/${i}/agent: only ceilingHitRate takes an agent`);
  });
  const steps = body.ramp?.steps ?? [];
  steps.forEach((s, i) => {
    if (i > 0 && s.share < steps[i - 1]!.share) throw bad(`body/ramp/steps/${i}/share: steps must not decrease`);
  });
}

/**
 * The stored state kept (a new experiment starts as a draft), a new phase begun (the ending phase's assignment
 * recorded, for an ab or probe experiment), the ramp step kept within the ramp.
 */
function nextState(existing: ExperimentDoc | undefined, newPhase: boolean, now: number, rampSteps: number): ExperimentState {
  const prev = existing?.state;
  let state: ExperimentState = prev ? (newPhase ? { ...prev, phase: prev.phase + 1, phaseStartedAt: now, stepStartSamples: 0 } : prev) : { status: 'draft', phase: 0 };
  if (existing && prev && newPhase && existing.type !== 'holdout') {
    const ended: EarlierPhase = {
      phase: prev.phase,
      ...(prev.phaseStartedAt !== undefined ? { startedAt: prev.phaseStartedAt } : {}),
      endedAt: now,
      variants: existing.variants.map((v) => ({ ...v })),
      control: existing.control,
    };
    state = { ...state, earlierPhases: [...(prev.earlierPhases ?? []), ended] };
  }
  // A ramp added to a started experiment begins at its first step now (its minDurationSec counts from the change).
  if (prev && prev.status !== 'draft' && rampSteps > 0 && state.rampStep === undefined) state = { ...state, rampStep: 0, stepStartedAt: now };
  const rampStep = state.rampStep;
  return rampStep !== undefined && rampSteps > 0 && rampStep >= rampSteps ? { ...state, rampStep: rampSteps - 1 } : state;
}

/**
 * A started holdout's PUT that moves units (coverage or seed): its next phase, with the same held strategy and
 * exposed default, the new coverage recorded in `holdoutPhases` (and the ending phase's, when its entry lacks it).
 */
function nextHoldoutPhaseOnPut(existing: ExperimentDoc, doc: ExperimentDoc, now: number, cause: string): ExperimentDoc {
  const s = doc.state;
  const held = heldStrategy(doc);
  const exposedDefault = s.exposedDefault ?? held;
  const earlier = (s.holdoutPhases ?? []).map((h) => (h.coverage === undefined ? { ...h, coverage: existing.coverage } : h));
  return { ...doc, state: { ...s, holdoutPhases: [...earlier, { phase: s.phase, startedAt: now, held, exposedDefault, coverage: doc.coverage, cause }] } };
}

/** The strategy a holdout's units get: the pipeline default when it started, frozen until it ends. */
export function heldStrategy(doc: ExperimentDoc): string {
  return doc.variants[0]?.strategy ?? BUILTIN_UNIFORM_ID;
}

/** The API's view of a stored experiment. */
export function experimentView(v: Versioned<ExperimentDoc>): Record<string, unknown> {
  const d = v.doc;
  return {
    id: v.id,
    version: v.version,
    ...d,
    effectiveCoverage: effectiveCoverage(d),
    guardrails: d.guardrails ?? [],
    alpha: d.alpha ?? DEFAULT_ALPHA,
  };
}
