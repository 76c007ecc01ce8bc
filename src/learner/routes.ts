import { Type } from '@sinclair/typebox';
import { RequirementMissingError, versionIn } from '../control/store.js';
import { writeFresh } from '../control/write.js';
import { recheckTenant } from '../tenancy/guard.js';
import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { Id, type Pipeline } from '../pipelines/schema.js';
import type { ControlView } from '../control/view.js';
import { controlShareOf, controlStrategyDef, servingControlShare } from './control-arm.js';
import type { Services } from '../kernel/module.js';
import { compileFeatures, FeaturesBody, validateFeatures, type FeatureSpec } from './features.js';
import { servingModel, type LearnedParams } from './kind.js';
import { learnerKeys } from './keys.js';
import { jsonDecoder } from '../redis/decode.js';
import { describeRule, gateRuleFor } from './gate.js';
import { evaluateOffPolicy, OPE_TOLERANCE, pipelineCostWeight, tierRewardOf } from './ope-service.js';
import { EXPLORE_FIRST_SHARE, learnsTiers, modelAgreementOf } from '@apportion/sdk/engine';
import { readServingGuard, safeStartComparison, type SafeStartComparison } from './guard-monitor.js';
import { CONTROL_SHARE_DEFAULTS, probationShareOf, type RevertRecord } from './guard.js';
import { unfitFor, type ModelDoc, type ModelSummary } from './registry.js';
import type { TrainingService } from './training.js';
import { learnedStrategies } from './learned-strategies.js';

const PipelineParams = Type.Object({ id: Id });
const ModelParams = Type.Object({ pipeline: Id });
const Interval = Type.Object({ value: Type.Number(), lo: Type.Number(), hi: Type.Number() });
const Metrics = Type.Record(Type.String(), Type.Union([Type.Number(), Type.String()]));
const GateComparisonSchema = Type.Object({
  against: Type.String({ description: 'serving or default' }),
  diff: Type.Number({ description: 'Mean paired DR difference, candidate − reference.' }),
  lo: Type.Number({ description: 'Its one-sided lower confidence bound.' }),
  reference: Type.Number(),
  candidate: Type.Number(),
  lineage: Type.Optional(Type.Object({ version: Type.Integer(), events: Type.Integer() }, { description: 'For default: judged along the serving version\'s record (that version, and the decisions of the chain).' })),
  lineageChanged: Type.Optional(
    Type.Object(
      { version: Type.Integer(), older: Type.Number(), recent: Type.Number(), olderEvents: Type.Integer(), recentEvents: Type.Integer() },
      { description: 'For default: not judged along the serving version\'s record because it shows a change: Δ(serving, default) on its older decisions and on the candidate\'s (recent) ones.' },
    ),
  ),
});
const GateSchema = Type.Object({
  status: Type.String({ description: 'candidate (awaiting the gate, or judged inconclusively and waiting for more decisions), passed or refused' }),
  reason: Type.String(),
  events: Type.Integer(),
  comparisons: Type.Array(GateComparisonSchema),
  decidedAt: Type.Number(),
  look: Type.Optional(Type.Integer({ description: 'How many times the gate has judged this version.' })),
  guard: Type.Optional(
    Type.Object(
      {
        reason: Type.String({ description: 'guard: refused by the runtime guard on the candidate arm’s realised rewards.' }),
        at: Type.Number(),
        against: Type.String({ description: 'default: the control arm (the default strategy); serving: the rest of the learned strategy’s decisions.' }),
        diff: Type.Number({ description: 'Mean reward of the candidate arm − the reference arm.' }),
        ci: Type.Array(Type.Number(), { description: 'Always-valid confidence interval of diff (at α/2).' }),
        candidate: Type.Object({ n: Type.Integer(), mean: Type.Number() }),
        reference: Type.Object({ n: Type.Integer(), mean: Type.Number(), strategy: Type.Optional(Type.String()) }),
      },
      { description: 'Set when the runtime guard refused this candidate before the activation gate judged it.' },
    ),
  ),
});
/** The runtime guard's fields of a model version and of the model list (guard-monitor.ts). */
const GuardArm = Type.Object({ n: Type.Integer(), mean: Type.Number(), strategy: Type.Optional(Type.String()) });
const DriftEstimate = Type.Object({
  events: Type.Integer({ description: 'Decisions with an outcome logged since `since`.' }),
  since: Type.Number({ description: 'Start of the decisions judged (epoch ms): the change as drift recovery placed it, or the version’s activation if later.' }),
  serving: Type.Number({ description: 'DR estimate of the retired version’s split.' }),
  default: Type.Number({ description: 'DR estimate of the default strategy’s split.' }),
  defaultStrategy: Type.String(),
  lower: Type.Number({ description: 'One-sided lower confidence bound (bootstrap-t) of diff at `level`.' }),
  level: Type.Number(),
  delta: Type.Number({ description: 'Retired because the bound and diff are below −delta (the gate’s δ).' }),
});
const GuardRevertSchema = Type.Object({
  reason: Type.String({ description: 'guard: the runtime guard (realised rewards of the learned and control arms); drift: drift recovery after a detected change (the gate’s estimate against the default strategy).' }),
  from: Type.Integer(),
  to: Type.Integer({ description: 'The version that serves instead; 0 = the control strategy.' }),
  at: Type.Number(),
  diff: Type.Number({ description: 'guard: mean reward of the learned arm − the control arm; drift: estimated value of the retired version − the default strategy.' }),
  ci: Type.Optional(Type.Array(Type.Number(), { description: 'guard only: always-valid confidence interval of diff.' })),
  learned: Type.Optional(GuardArm),
  control: Type.Optional(GuardArm),
  estimate: Type.Optional(DriftEstimate),
});
const DriftChangeSchema = Type.Object({
  detectedAt: Type.Number(),
  version: Type.Integer({ description: 'The version whose error on newer decisions showed the change.' }),
  changeTs: Type.Number({ description: 'Where the change was placed: when that version was trained (epoch ms).' }),
  changeAt: Type.Integer({ description: 'The pipeline’s outcome count there.' }),
  mse: Type.Number(),
  holdoutMse: Type.Number(),
  z: Type.Number(),
  n: Type.Integer(),
  reason: Type.String(),
});
const GuardSummaryFields = {
  activatedAt: Type.Optional(Type.Number({ description: 'When the version last became the serving one.' })),
  reverted: Type.Optional(GuardRevertSchema),
  held: Type.Optional(Type.String({ description: 'Why a saved version was not activated.' })),
};
const GuardResponse = Type.Object({
  toControl: Type.Boolean({ description: 'The guard or drift recovery took every model out of service: the safe start (the default strategy explored around, the pending candidate mixed in, the control arm at its share) serves until a version clears the gate.' }),
  holdUntil: Type.Union([Type.Integer(), Type.Null()], { description: 'Automatic activations wait until the pipeline has this many outcomes.' }),
  reverts: Type.Array(GuardRevertSchema),
  safeStart: Type.Optional(
    Type.Object(
      {
        scale: Type.Number({ description: 'Exploration scale of the safe start: its exploration rate is 0.2 × scale, the pending candidate’s share 0.2 × max(scale, 0.5).' }),
        shrinks: Type.Integer({ description: 'How many times the guard halved it.' }),
        at: Type.Optional(Type.Number()),
        exploration: Type.Optional(Type.Number({ description: 'The exploration rate’s own factor, halved by the cost test (absent: 1): the safe start explores at 0.2 × scale × exploration; the candidate’s share follows scale alone.' })),
        by: Type.Optional(Type.Union([Type.Literal('control'), Type.Literal('cost')], { description: 'Which test last shrank it: control (the learned traffic against the control arm; halves scale) or cost (the exploration’s shortfall per decision against the default split beyond safeStartMargin; halves exploration).' })),
        reason: Type.Optional(Type.String({ description: 'Why it was last shrunk, with the test’s always-valid interval.' })),
        diff: Type.Optional(Type.Number({ description: 'The test that shrank it: mean reward of the safe start’s learned traffic − the control arm’s (by control), or the exploration’s shortfall per decision against the default split (by cost).' })),
        ci: Type.Optional(Type.Array(Type.Number())),
        learned: Type.Optional(Type.Object({ n: Type.Integer(), mean: Type.Number() })),
        control: Type.Optional(Type.Object({ n: Type.Integer(), mean: Type.Number(), strategy: Type.Optional(Type.String()) })),
        current: Type.Optional(
          Type.Object(
            {
              at: Type.Number({ description: 'The guard tick that computed it (epoch ms).' }),
              since: Type.Number({ description: 'The evidence is of the decisions since then (epoch ms): the start of this safe start, or its last shrink.' }),
              scale: Type.Number(),
              status: Type.String({ description: 'insufficient (under 30 outcomes in an arm), ok (not shown worse), worse (the test fired: the scale is being halved).' }),
              learned: Type.Object({ n: Type.Integer(), mean: Type.Number({ description: 'Mean realised reward of the learned traffic (the default strategy explored around, the candidate mixed in).' }) }),
              control: Type.Object({ n: Type.Integer(), mean: Type.Number(), strategy: Type.String() }),
              diff: Type.Union([Type.Number(), Type.Null()], { description: 'learned − control (null before each arm has 2 outcomes).' }),
              ci: Type.Union([Type.Array(Type.Number()), Type.Null()], { description: 'Always-valid confidence interval of diff at `alpha`.' }),
              alpha: Type.Number({ description: 'The level this test runs at (α/(j(j+1)) for the j-th; half that for each test when the cost test runs beside it).' }),
              cost: Type.Optional(
                Type.Object(
                  {
                    status: Type.String({ description: 'insufficient, ok, or worse (the shortfall’s interval lies wholly below −margin: the scale is being halved).' }),
                    cost: Type.Union([Type.Number(), Type.Null()], { description: 'What the exploration costs per learned decision (the candidate’s plays left out): share × (away.mean − atDefault.mean).' }),
                    ci: Type.Union([Type.Array(Type.Number()), Type.Null()], { description: 'Its always-valid interval at `alpha`.' }),
                    share: Type.Number({ description: 'Share of the learned decisions (the candidate’s plays left out) that served a perturbation of the default split.' }),
                    margin: Type.Union([Type.Number(), Type.Null()], { description: 'The strategy’s safeStartMargin; null: reported only (the estimate against 0 at the safe start’s level), the test does not act.' }),
                    away: Type.Object({ n: Type.Integer(), mean: Type.Number() }, { description: 'The learned decisions that served a perturbation of the default split.' }),
                    atDefault: Type.Object({ n: Type.Integer(), mean: Type.Number() }, { description: 'Decisions that served the default split (the learned traffic’s and the control arm’s).' }),
                  },
                  { description: 'The cost test (docs/learner.md, "The safe start’s cost test"): listed while the safe start is judged (absent while explore-first explores); it acts only with a safeStartMargin.' },
                ),
              ),
            },
            { description: 'The safe-start test’s running comparison as of the guard’s latest tick, listed while no version is active (not while an active version that no longer fits the pipeline is replaced by the safe start: the guard does not judge that one), before any shrink too.' },
          ),
        ),
      },
      {
        description:
          'While no trained version serves (the safe start) and the guard judges it: `current`, the running comparison of the learned traffic with the control arm (scale 1 and shrinks 0 before any shrink). The other fields are set when the runtime guard found the safe start’s learned traffic (the default strategy explored around, the candidate mixed in) worse than its control arm and shrank its exploration, and dropped when a version activates or a revert starts a new safe start.',
      },
    ),
  ),
});
const Summary = Type.Object({
  version: Type.Integer(),
  createdAt: Type.Number(),
  signature: Type.String(),
  agents: Type.Array(Type.String()),
  metrics: Metrics,
  kind: Type.Optional(
    Type.Union([Type.Literal('tokens'), Type.Literal('tiers')], { description: 'tokens: a token-split reward model; tiers: a joint model-and-tokens reward model (a pipeline with model tiers). Absent: written before model tiers (tokens).' }),
  ),
  gate: Type.Optional(GateSchema),
  unusableFeatures: Type.Optional(
    Type.Record(
      Type.String(),
      Type.Object({
        present: Type.Integer({ description: 'Requests of the training window that carried a value of the feature.' }),
        unusable: Type.Integer({ description: 'Of those, values the declaration cannot read: for a numeric or tokens feature anything but a number or boolean (a number spelled as a string, "12", included), for a categorical feature with values one not among them. They count as missing (unknown).' }),
        example: Type.Optional(Type.String({ description: 'The first such value, as JSON, cut to 40 characters.' })),
      }),
      { description: 'The declared features whose values in this version’s training window could not be read, if any (docs/learner.md, "Features").' },
    ),
  ),
  ...GuardSummaryFields,
});
const FeaturesResponse = Type.Object({
  pipeline: Type.String(),
  version: Type.Integer(),
  inputDim: Type.Integer(),
  signature: Type.String(),
  features: FeaturesBody.properties.features,
});
/** The activation gate and safe start as GET /v1/models shows them (see gateFields). */
const ModelsGateFields = {
  kind: Type.Optional(Type.Union([Type.Literal('tokens'), Type.Literal('tiers')], { description: 'The serving version’s kind (absent during the safe start).' })),
  serving: Type.Optional(
    Type.String({ description: 'model: a version serves; default-strategy: the safe start (no version has cleared the gate yet; the default strategy serves, explored around)' }),
  ),
  candidate: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { description: 'The version awaiting the activation gate (its split is mixed into 10 % of decisions).' })),
  gateRule: Type.Optional(Type.String()),
  exploreFirst: Type.Optional(
    Type.Object(
      {
        until: Type.Integer({ description: 'The strategy’s exploreFirst: outcomes before which the safe start serves random splits and no version is activated.' }),
        share: Type.Number({ description: 'Share of the safe start’s decisions served at random meanwhile.' }),
        status: Type.Union([Type.Literal('exploring'), Type.Literal('ended')], { description: 'ended: the trainer found the pipeline had `until` outcomes (at a retrain).' }),
        endedAt: Type.Optional(Type.Number({ description: 'When it ended (epoch ms).' })),
        endedAtOutcomes: Type.Optional(Type.Integer({ description: 'The pipeline’s outcome count then.' })),
      },
      { description: 'Explore-first, when the learned strategy sets `exploreFirst` (docs/learner.md, "Explore-first").' },
    ),
  ),
  scaling: Type.Optional(Type.Record(Type.String(), Type.Object({ center: Type.Number(), scale: Type.Number() }), { description: 'The serving version’s fitted feature scaling.' })),
};

const ModelsResponse = Type.Object({
  pipeline: Type.String(),
  active: Type.Union([Type.Integer(), Type.Null()]),
  compatible: Type.Boolean({ description: 'Whether the active model fits the current feature declaration, agents and (model tiers) candidate models (else the prior serves).' }),
  incompatible: Type.Optional(
    Type.String({ description: 'Why the active version does not serve (set when `active` is a version and `compatible` is false): what it was trained for and what the pipeline has now; the safe start serves until a version trained for the pipeline as it is clears the gate, or a rollback to a version that fits.' }),
  ),
  versions: Type.Array(Summary),
  weights: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  ...ModelsGateFields,
  guard: Type.Optional(GuardResponse),
  runtimeGuard: Type.Optional(
    Type.Object(
      {
        version: Type.Integer({ description: 'The serving version the test is of.' }),
        since: Type.Number({ description: 'Start of the guard’s segment (epoch ms): its start, its last revert or a manual activation.' }),
        status: Type.Union([Type.Literal('insufficient'), Type.Literal('ok'), Type.Literal('worse')], {
          description: 'insufficient: fewer than 30 outcomes in an arm; ok: not shown worse (the interval reaches 0 or above); worse: shown worse (the guard reverts at its next tick).',
        }),
        diff: Type.Union([Type.Number(), Type.Null()], { description: 'Mean realised reward of the learned arm − the control arm over the segment.' }),
        ci: Type.Union([Type.Array(Type.Number()), Type.Null()], { description: 'Its always-valid confidence interval at level 1 − alpha.' }),
        alpha: Type.Number(),
        detectable: Type.Union([Type.Number(), Type.Null()], {
          description: 'Half the interval’s width: a shortfall much smaller than this cannot be shown yet (it shrinks about as 1/√(control outcomes)).',
        }),
        learned: Type.Object({ n: Type.Integer(), mean: Type.Number() }),
        control: Type.Object({ n: Type.Integer(), mean: Type.Number(), strategy: Type.String() }),
        controlShare: Type.Number({
          description:
            'Share of the serving version’s decisions the control arm gets now: the strategy’s controlShare, raised to probationShare while the version is on probation (it has not shown it is no worse than the control by more than probationMargin; docs/learner.md, "Probation"), lowered while it leads the control clearly (controlShareMin, controlShareMargin; "A smaller control arm while the learned arm leads").',
        }),
        probation: Type.Object(
          {
            on: Type.Boolean({ description: 'The serving version is on probation now: its control share is raised to probationShare.' }),
            share: Type.Union([Type.Number(), Type.Null()], { description: 'The strategy’s probationShare (null: at or below controlShare, so no probation).' }),
            margin: Type.Number({ description: 'The shortfall against the control (reward per decision) the version must rule out to leave probation (probationMargin).' }),
          },
          { description: 'Probation (docs/learner.md, "Probation"): the control arm at probationShare from the start of the guard’s segment until the version has shown it is no worse than the control by more than probationMargin, and whenever that stops holding.' },
        ),
        controlUnavailable: Type.Object(
          {
            decisions: Type.Integer({ description: 'Learned decisions made with a control share whose control arm was dropped, since the pipeline was created.' }),
            last: Type.Union([
              Type.Object({
                at: Type.Number({ description: 'When (epoch ms).' }),
                version: Type.Integer({ description: 'The model version that decided.' }),
                reason: Type.Optional(Type.String({ description: 'Why the control strategy could not allocate (as last logged).' })),
              }),
              Type.Null(),
            ]),
          },
          {
            description:
              "Decisions the control arm could not take: the control strategy (the pipeline's default) failed for the request or gave no whole budgets, so the learned arm served it alone and the guard's control has no such requests (docs/learner.md, \"Runtime guard\").",
          },
        ),
      },
      {
        description:
          'The runtime guard’s cumulative test of the serving version against the control arm as the worker’s last tick left it: what the guard can and cannot yet see. Absent while no trained version serves (the safe start) or before the first tick.',
      },
    ),
  ),
  drift: Type.Optional(Type.Object({ changes: Type.Array(DriftChangeSchema, { description: 'Changes drift recovery detected, newest first (at most 20).' }) })),
  trainer: Type.Optional(
    Type.Object(
      {
        escalations: Type.Integer({ description: "Escalation steps of this pipeline's retrains so far (apportion_learner_trainer_escalations_total)." }),
        lastEscalation: Type.Union([
          Type.Object({
            at: Type.Number(),
            level: Type.Integer({ description: '1 = the first step above the lowest priority.' }),
            policy: Type.Union([Type.Literal('idle'), Type.Literal('other')], { description: 'Scheduling class reached (SCHED_IDLE, SCHED_OTHER).' }),
            nice: Type.Integer(),
            how: Type.Union([Type.Literal('in-place'), Type.Literal('new-process')]),
            afterMs: Type.Number({ description: 'How long the retrain had run when it was raised.' }),
            reason: Type.Optional(Type.String({ description: 'Why the running trainer could not be raised (new-process).' })),
          }),
          Type.Null(),
        ]),
      },
      { description: 'Priority escalation of retrains that ran past APPORTION_TRAIN_ESCALATE_AFTER_MS (docs/learner.md, trainer priority escalation).' },
    ),
  ),
});
const OpeQuery = Type.Object({
  strategy: Type.String({ minLength: 1, maxLength: 128 }),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$', description: 'Newest logged events used. Default 20000.' })),
  tolerance: Type.Optional(Type.String({ pattern: '^0?\\.[0-9]+$|^0$', description: 'Action match tolerance (share of the total). Default 0.005.' })),
  resamples: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'Bootstrap resamples. Default 500.' })),
});
const OpeResponse = Type.Object({
  pipeline: Type.String(),
  strategy: Type.String(),
  events: Type.Integer(),
  support: Type.Number(),
  tolerance: Type.Number(),
  ess: Type.Number(),
  matched: Type.Integer({ description: "Logged decisions whose action is the target's." }),
  ips: Type.Union([Interval, Type.Null()]),
  snips: Type.Union([Interval, Type.Null()]),
  dr: Type.Union([Interval, Type.Null()]),
  dm: Type.Union([Type.Number(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'Why ips, snips and dr are null (the log does not support an estimate), or ips and snips only (partial support: under 95 % of the decisions could have played the target\'s action; dr is then given).' }),
  logged: Type.Number({ description: 'Mean reward (quality − costWeight·cost) of the logged decisions.' }),
  costWeight: Type.Number({ description: "λ of the reward, the same for every target: the costWeight of the learned strategy the pipeline's model is trained with (its default strategy when learned, else the first learned strategy by id); 0 without one." }),
  modelVersion: Type.Integer(),
});

/** The serving version's runtime-guard test (guard-monitor.ts readServingGuard), when a trained version serves. */
async function runtimeGuardView(core: Services<'redis' | 'keys'>, view: ControlView, p: Pipeline, doc: ModelDoc | undefined, servingVersion: number, params: LearnedParams | undefined) {
  const active = doc?.active ?? 0;
  if (!doc || !params || active <= 0 || servingVersion !== active || params.controlShare === 0) return {};
  const [st, [dropped, droppedLast]] = await Promise.all([
    readServingGuard(core, p.id, active, doc.guard?.since ?? 0, params),
    core.redis.hmget(learnerKeys(core.keys, p.id).counters, 'controlUnavailable', 'controlUnavailableLast'),
  ]);
  if (!st) return {};
  const v = st.verdict;
  const base = controlShareOf(params.controlShare);
  const share = servingControlShare(view, p, params.controlShare, active);
  const probationShare = probationShareOf(params.probationShare, learnsTiers(p));
  return {
    runtimeGuard: {
      version: st.version,
      since: st.since,
      status: v.status,
      diff: v.diff,
      ci: v.ci ? [...v.ci] : null,
      alpha: st.alpha,
      detectable: v.ci ? (v.ci[1] - v.ci[0]) / 2 : null,
      learned: { ...v.learned },
      control: { ...v.control, strategy: controlStrategyDef(view, p).id },
      controlShare: share,
      probation: { on: share > base, share: probationShare > base ? probationShare : null, margin: params.probationMargin ?? CONTROL_SHARE_DEFAULTS.probation },
      controlUnavailable: { decisions: Number(dropped ?? 0), last: (droppedLast ? decodeDropped(droppedLast) : undefined) ?? null },
    },
  };
}

/** The last dropped control arm as ControlDrops stored it (control-drops.ts); another shape reads as absent. */
const decodeDropped = jsonDecoder(Type.Object({ at: Type.Number(), version: Type.Integer(), reason: Type.Optional(Type.String()) }));

/** A revert as listed: records written before the reason was kept are the guard's. */
const revertView = (r: RevertRecord) => ({ ...r, reason: r.reason ?? 'guard' });
const versionView = (v: ModelSummary) => ({ ...v, agents: [...v.agents], metrics: { ...v.metrics }, ...(v.reverted ? { reverted: revertView(v.reverted) } : {}) });
const guardView = (doc: ModelDoc | undefined, current?: SafeStartComparison) => ({
  ...(doc?.guard || current
    ? {
        guard: {
          toControl: doc?.guard?.toControl === true,
          holdUntil: doc?.guard?.holdUntil ?? null,
          reverts: (doc?.guard?.reverts ?? []).map(revertView),
          ...(doc?.guard?.safeStart || current
            ? {
                safeStart: {
                  ...(doc?.guard?.safeStart ?? { scale: 1, shrinks: 0 }),
                  ...(doc?.guard?.safeStart?.ci ? { ci: [...doc.guard.safeStart.ci] } : {}),
                  ...(current ? { current: { ...current, ci: current.ci ? [...current.ci] : null, ...(current.cost ? { cost: { ...current.cost, ci: current.cost.ci ? [...current.cost.ci] : null } } : {}) } } : {}),
                },
              }
            : {}),
        },
      }
    : {}),
  ...(doc?.drift ? { drift: { changes: [...doc.drift.changes] } } : {}),
});

/** Field order of a stored feature spec (the schema's); fields not named here follow in their own order. */
const SPEC_FIELDS = ['name', 'type', 'transform', 'mean', 'std', 'values', 'hashBuckets'];

/** A feature spec with its fields in the canonical order (values and their order are kept: they are the encoding). */
function canonicalSpec(f: FeatureSpec): FeatureSpec {
  const rec = f as unknown as Record<string, unknown>;
  const keys = [...SPEC_FIELDS.filter((k) => k in rec), ...Object.keys(rec).filter((k) => !SPEC_FIELDS.includes(k))];
  return Object.fromEntries(keys.map((k) => [k, rec[k]])) as unknown as FeatureSpec;
}

/**
 * The declaration to store for `body`: the one in place when it is `body` up to the order of the specs' fields (so
 * its spelling, hence its encoder signature, is kept), else `body` with each spec's fields in the canonical order.
 */
export function storedDeclaration(body: FeaturesBody, current: FeaturesBody | undefined): FeaturesBody {
  const canonical = { features: body.features.map(canonicalSpec) };
  if (current && Array.isArray(current.features) && JSON.stringify(current.features.map(canonicalSpec)) === JSON.stringify(canonical.features)) return { features: current.features };
  return canonical;
}

const num = (s: string | undefined, def: number) => (s === undefined ? def : Number(s));
/** JSON cannot carry NaN: intervals without data come back as null-free zeros with events = 0. */
const finite = <T>(o: T): T => JSON.parse(JSON.stringify(o, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? 0 : v))) as T;

/** Safe start, candidate, gate rule and fitted scaling for the models listing. */
function gateFields(doc: ModelDoc | undefined, servingVersion: number, params: LearnedParams | undefined, pipeline: Pipeline) {
  const tiers = learnsTiers(pipeline);
  const until = params?.exploreFirst ?? 0;
  return {
    serving: servingVersion > 0 ? 'model' : 'default-strategy',
    ...(servingVersion > 0 ? { kind: doc?.kind ?? 'tokens' } : {}),
    candidate: doc?.candidate?.version ?? null,
    gateRule: describeRule(gateRuleFor(tiers, params?.gateDelta)),
    ...(until > 0
      ? {
          exploreFirst: {
            until,
            share: params?.exploreFirstShare ?? EXPLORE_FIRST_SHARE,
            status: doc?.exploreFirst ? ('ended' as const) : ('exploring' as const),
            ...(doc?.exploreFirst ? { endedAt: doc.exploreFirst.endedAt, endedAtOutcomes: doc.exploreFirst.outcomes } : {}),
          },
        }
      : {}),
    ...(servingVersion > 0 && doc?.scaling ? { scaling: doc.scaling } : {}),
  };
}

export function learnerRoutes(app: ApiApp, core: Services<'redis' | 'keys' | 'kinds' | 'view' | 'store' | 'snapshot'>, training: TrainingService, enqueueTrain: (pipeline: string) => Promise<void>): void {
  const pipelineOr404 = (id: string, field: string) => {
    const p = core.view().pipelines.get(id);
    if (!p) throw new AppError('PIPELINE_NOT_FOUND', `${field}: no pipeline "${id}"`);
    return p;
  };

  app.put(
    '/v1/pipelines/:id/features',
    {
      schema: {
        tags: ['learner'],
        summary: 'Declare (or replace) the features the learner reads for a pipeline; versioned',
        params: PipelineParams,
        body: FeaturesBody,
        response: { 200: FeaturesResponse, ...errorResponses },
      },
    },
    async (req) => {
      const { id } = req.params;
      const body = req.body;
      validateFeatures(body);
      // A request cannot carry it: the JSON parser refuses a body with a "__proto__" key (prototype poisoning), so
      // the feature would be missing on every request.
      const proto = body.features.findIndex((f) => f.type !== 'tokens' && f.name === '__proto__');
      if (proto >= 0) throw new AppError('INVALID_FEATURES', `body/features/${proto}/name: "${body.features[proto]!.name}" cannot be sent (a request body with a "__proto__" key is refused); choose another name`);
      let stored: FeaturesBody = body;
      const version = await writeFresh(core, `params/id: pipeline "${id}"`, async () => {
        const view = core.view();
        recheckTenant(req, view);
        if (!view.pipelines.has(id)) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
        // The encoder's signature hashes the declaration as stored, so one that differs only in the order of its
        // fields must be stored alike: else re-applying it (another tool, another language's map) would make the
        // serving model incompatible. Stored in the canonical order, or as the declaration in place when it is that
        // one up to field order (declarations stored before keep their spelling, and their models).
        stored = storedDeclaration(body, view.raw.kinds.features.get(id)?.doc as FeaturesBody | undefined);
        try {
          // Applies only to the pipeline (and owner) as read: not to one deleted and re-created meanwhile.
          return await core.store.put('features', id, stored, { requires: { kind: 'pipelines', id }, expect: { docs: [versionIn(view.raw, 'pipelines', id)] } });
        } catch (e) {
          if (e instanceof RequirementMissingError) throw new AppError('PIPELINE_NOT_FOUND', `params/id: no pipeline "${id}"`);
          throw e;
        }
      });
      await core.snapshot.refresh();
      const enc = compileFeatures(stored.features);
      return { pipeline: id, version, inputDim: enc.dim, signature: enc.signature, features: stored.features };
    },
  );

  app.get(
    '/v1/pipelines/:id/features',
    { schema: { tags: ['learner'], summary: "A pipeline's feature declaration", params: PipelineParams, response: { 200: FeaturesResponse, ...errorResponses } } },
    async (req) => {
      const { id } = req.params;
      pipelineOr404(id, 'params/id');
      const v = core.view().raw.kinds.features.get(id);
      const features = (v?.doc as FeaturesBody | undefined)?.features ?? [];
      const enc = compileFeatures(features);
      return { pipeline: id, version: v?.version ?? 0, inputDim: enc.dim, signature: enc.signature, features };
    },
  );

  app.get(
    '/v1/models/:pipeline',
    {
      schema: {
        tags: ['learner'],
        summary: "A pipeline's model versions (newest first) and the active one",
        params: ModelParams,
        querystring: Type.Object({ weights: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) }),
        response: { 200: ModelsResponse, ...errorResponses },
      },
    },
    async (req) => {
      const { pipeline } = req.params;
      const p = pipelineOr404(pipeline, 'params/pipeline');
      const view = core.view();
      const bad = training.registry.unreadable(pipeline, view.raw);
      if (bad) throw bad;
      const doc = view.raw.kinds.models.get(pipeline)?.doc as ModelDoc | undefined;
      const serving = servingModel(view, p);
      const withWeights = req.query.weights === 'true';
      // While the safe start serves and the guard judges it: its running comparison (guard-monitor checkSafeStart).
      // Not while a version is active that no longer fits (a changed declaration or agent list): the guard does not
      // judge that safe start, and the stored comparison is of the safe start before the version served.
      const params = learnedStrategies(view, p)[0]?.params as LearnedParams | undefined;
      const current = serving.version === 0 && (doc?.active ?? 0) === 0 && params && params.controlShare !== 0 && params.guardSafeStart !== false && !learnsTiers(p) ? await safeStartComparison(core, pipeline, doc) : undefined;
      const compatible = doc !== undefined && serving.version === doc.active;
      return {
        pipeline,
        active: doc?.active || null,
        compatible,
        ...(doc && doc.active > 0 && !compatible
          ? { incompatible: `model ${doc.active} ${unfitFor(doc, p, serving.encoder.signature) ?? 'could not be read (its weights do not fit its own layout)'}` }
          : {}),
        versions: (doc?.versions ?? []).map(versionView),
        ...(withWeights && doc?.weights ? { weights: { ...doc.weights } } : {}),
        ...gateFields(doc, serving.version, params, p),
        ...guardView(doc, current),
        ...(await runtimeGuardView(core, view, p, doc, serving.version, params)),
        trainer: await training.escalations(pipeline),
      };
    },
  );

  app.post(
    '/v1/models/:pipeline/rollback',
    {
      schema: {
        tags: ['learner'],
        summary: 'Serve an earlier (or any saved) model version; every process switches within about a second',
        params: ModelParams,
        body: Type.Object({ version: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
        response: { 200: ModelsResponse, ...errorResponses, 409: errorResponses[400] },
      },
    },
    async (req) => {
      const { pipeline } = req.params;
      const { version } = req.body;
      const p = pipelineOr404(pipeline, 'params/pipeline');
      const mv = await training.registry.load(pipeline, version);
      // The rule every pick of a version follows (registry.ts unfitFor): features, agents, kind and (model tiers) candidate models.
      const unfit = unfitFor(mv, p, servingModel(core.view(), p).encoder.signature);
      if (unfit) throw new AppError('MODEL_INCOMPATIBLE', `body/version: model ${version} ${unfit}`);
      const doc = await training.registry.activate(mv, { manual: true });
      return { pipeline, active: doc.active, compatible: true, versions: doc.versions.map(versionView), ...guardView(doc) };
    },
  );

  app.post(
    '/v1/models/:pipeline/train',
    {
      schema: {
        tags: ['learner'],
        summary: 'Queue a retrain now (at most one waiting per pipeline; one asked for while another runs waits for it)',
        params: ModelParams,
        response: { 202: Type.Object({ queued: Type.Boolean() }), ...errorResponses },
      },
    },
    async (req, reply) => {
      const { pipeline } = req.params;
      const p = pipelineOr404(pipeline, 'params/pipeline');
      if (learnedStrategies(core.view(), p).length === 0) {
        throw new AppError('STRATEGY_NOT_FOUND', `params/pipeline: pipeline "${pipeline}" has no learned strategy to train for`);
      }
      const bad = training.registry.unreadable(pipeline);
      if (bad) throw bad;
      await enqueueTrain(pipeline);
      return reply.status(202).send({ queued: true });
    },
  );

  app.get(
    '/v1/pipelines/:id/ope',
    {
      schema: {
        tags: ['learner'],
        summary: "Estimate a strategy's value from the pipeline's logged decisions (IPS, SNIPS, DR; bootstrap 95 % CIs; ESS)",
        params: PipelineParams,
        querystring: OpeQuery,
        response: { 200: OpeResponse, ...errorResponses },
      },
    },
    async (req) => {
      const { id } = req.params;
      const q = req.query;
      const p = pipelineOr404(id, 'params/id');
      await training.ingest(id);
      const events = await training.events(id, Math.min(100_000, Math.max(1, num(q.limit, 20_000))));
      const res = evaluateOffPolicy({ view: core.view(), kinds: core.kinds }, p, q.strategy, events, {
        tolerance: num(q.tolerance, OPE_TOLERANCE),
        resamples: Math.min(5000, num(q.resamples, 500)),
      });
      return finite(res);
    },
  );

  app.get(
    '/v1/pipelines/:id/shadow',
    {
      schema: {
        tags: ['learner'],
        summary: "How a shadow learned strategy compares with what was served: agreement and estimated value",
        params: PipelineParams,
        querystring: Type.Object({ strategy: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: {
          200: Type.Object({
            pipeline: Type.String(),
            strategy: Type.String(),
            observed: Type.Integer({ description: 'Logged decisions with an outcome where the strategy ran in shadow.' }),
            agreement: Type.Union([Type.Number(), Type.Null()], { description: 'Mean 1 − (share of the total the two splits place differently); null with `reason` when nothing was observed.' }),
            modelAgreement: Type.Optional(
              Type.Number({ description: 'Model tiers: mean share of the agents declaring models on which the shadow action names the served model (over the decisions whose shadow action has models).' }),
            ),
            sameModels: Type.Optional(Type.Number({ description: 'Model tiers: share of those decisions where the shadow action names the served model for every agent.' })),
            withModels: Type.Optional(Type.Integer({ description: 'Model tiers: the decisions whose shadow action has models.' })),
            servedReward: Type.Union([Type.Number(), Type.Null()], { description: 'Mean reward of what was served on those decisions; null when nothing was observed.' }),
            reason: Type.Optional(Type.String({ description: 'Why agreement and servedReward are null.' })),
            ope: OpeResponse,
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const { strategy } = req.query;
      const p = pipelineOr404(id, 'params/id');
      const def = core.view().strategies.get(strategy);
      if (!def || def.pipeline !== id || def.kind !== 'learned') {
        throw new AppError('STRATEGY_NOT_FOUND', `querystring/strategy: pipeline "${id}" has no learned strategy "${strategy}"`);
      }
      await training.ingest(id);
      const events = await training.events(id, 20_000);
      const agents = p.agents.map((a) => a.name);
      // The reward OPE uses for every target (ope-service.ts pipelineCostWeight), so servedReward and ope compare.
      const costWeight = pipelineCostWeight(core.view(), p);
      const reward = tierRewardOf(p, costWeight);
      let n = 0;
      let agree = 0;
      let served = 0;
      // Model tiers: the shadow action's models against the served ones (agents declaring models).
      let nm = 0;
      let modelAgree = 0;
      let same = 0;
      for (const e of events) {
        const b = e.sh?.[strategy];
        if (!b) continue;
        n++;
        let d = 0;
        agents.forEach((a, i) => (d += Math.abs((e.b[a] ?? 0) - b[i]!)));
        agree += 1 - d / (2 * Math.max(1, e.T));
        served += reward(e);
        const sm = e.sM?.[strategy];
        const ma = sm ? modelAgreementOf(p, sm, e.M ?? []) : undefined;
        if (ma === undefined) continue;
        nm++;
        modelAgree += ma;
        if (ma === 1) same++;
      }
      const ope = evaluateOffPolicy({ view: core.view(), kinds: core.kinds }, p, strategy, events, {});
      return finite({
        pipeline: id,
        strategy,
        observed: n,
        // Nothing observed is not 0 % agreement: null, and why (as OPE answers an estimate without support).
        agreement: n ? agree / n : null,
        ...(nm > 0 ? { modelAgreement: modelAgree / nm, sameModels: same / nm, withModels: nm } : {}),
        servedReward: n ? served / n : null,
        ...(n ? {} : { reason: `no logged decision with an outcome has "${strategy}" beside it in shadow yet (its params need shadow: true; a decision counts once its outcome, or its default reward, is in)` }),
        ope,
      });
    },
  );

  app.get(
    '/v1/pipelines/:id/logs',
    {
      schema: {
        tags: ['learner'],
        summary: 'Logged decisions with outcomes: the training buffer, for export-logs (page it with `cursor`)',
        description:
          'With `cursor` (`start`, or the `next` of the previous page): oldest first, each line exactly once while new outcomes arrive; a line trimmed from the buffer (the newest 100,000 are kept) before it was read is reported by `gap`, not silently lost. Without `cursor`: the legacy newest-first page at `offset`, which shifts under traffic (lines repeat or are skipped between pages).',
        params: PipelineParams,
        querystring: Type.Object({
          limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,5}$', description: 'Lines to return: 1 to 999999, at most 10,000 are returned. Default 1,000.' })),
          offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$', description: 'Without cursor: the newest-first line to start at, 0 to 999999. Default 0.' })),
          cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: '`start` for the first page, then the previous page\'s `next`.' })),
          newest: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'With `cursor=start`: begin at the n-th newest line instead of the oldest (an export of the newest n).' })),
        }),
        response: {
          200: Type.Object({
            pipeline: Type.String(),
            agents: Type.Array(Type.String()),
            costWeight: Type.Number({ description: "λ of the reward quality − λ·cost that OPE and training use for this pipeline (ope-service.ts pipelineCostWeight)." }),
            items: Type.Array(Type.Unknown()),
            next: Type.Optional(Type.String({ description: 'Cursor mode: the cursor of the page after this one (the last line returned; the same cursor when nothing new).' })),
            gap: Type.Optional(Type.Boolean({ description: 'Cursor mode: true when the line the cursor names was trimmed from the buffer before this page, so lines between it and the oldest still buffered may have been lost; this page starts at the oldest.' })),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const q = req.query;
      const p = pipelineOr404(id, 'params/id');
      await training.ingest(id);
      const limit = Math.min(10_000, Math.max(1, num(q.limit, 1000)));
      const head = { pipeline: id, agents: p.agents.map((a) => a.name), costWeight: pipelineCostWeight(core.view(), p) };
      const buffer = learnerKeys(core.keys, id).buffer;
      if (q.cursor === undefined) {
        const offset = num(q.offset, 0);
        const raw = await core.redis.lrange(buffer, offset, offset + limit - 1);
        return { ...head, items: raw.map((r) => JSON.parse(r) as unknown) };
      }
      if (q.offset !== undefined) throw new AppError('VALIDATION_FAILED', 'querystring/offset: not with cursor (the cursor names where the page starts)');
      const page = await logsPage(core.redis, buffer, q.cursor === 'start' ? { newest: q.newest === undefined ? undefined : num(q.newest, 0) } : decodeCursor(q.cursor), limit);
      return { ...head, ...page };
    },
  );
}

/**
 * Where a page of the logs continues: the id of the last line returned and its position counted from the tail
 * (0 = the oldest line). The buffer grows only at its head (LPUSH) and is trimmed only at its tail (LTRIM keeps the
 * newest), so a line's position from the tail never grows: the cursor's line is at `pos` or below, or was trimmed.
 */
interface LogsCursor {
  readonly id: string;
  readonly pos: number;
}

const encodeCursor = (c: LogsCursor): string => Buffer.from(JSON.stringify([c.id, c.pos])).toString('base64url');

function decodeCursor(s: string): LogsCursor {
  try {
    const v = JSON.parse(Buffer.from(s, 'base64url').toString()) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && Number.isSafeInteger(v[1]) && (v[1] as number) >= 0) return { id: v[0], pos: v[1] as number };
  } catch {
    // answered below
  }
  throw new AppError('VALIDATION_FAILED', 'querystring/cursor: not a logs cursor (use `start`, or the `next` of the previous page)');
}

/** Lines of the buffer after the cursor's, oldest first. Each read is one LRANGE (atomic), counted from the tail. */
async function logsPage(
  redis: Services<'redis'>['redis'],
  buffer: string,
  from: LogsCursor | { readonly newest: number | undefined },
  limit: number,
): Promise<{ items: unknown[]; next: string; gap?: true }> {
  // Entries at positions lo..hi from the tail, newest first as LRANGE returns them; positions of the returned slice.
  const read = async (lo: number, hi: number) => {
    const raw = await redis.lrange(buffer, -(hi + 1), -(lo + 1));
    return { raw, posOf: (j: number) => lo + (raw.length - 1 - j) };
  };
  const take = (raw: string[], posOf: (j: number) => number, startJ: number, gap: boolean, fallback: string) => {
    const items: unknown[] = [];
    let next = fallback;
    for (let j = startJ; j >= 0 && items.length < limit; j--) {
      const e = JSON.parse(raw[j]!) as { id?: unknown };
      items.push(e);
      next = encodeCursor({ id: String(e.id), pos: posOf(j) });
    }
    return { items, next, ...(gap ? { gap: true as const } : {}) };
  };
  if (!('id' in from)) {
    let lo = 0;
    if (from.newest !== undefined) lo = Math.max(0, (await redis.llen(buffer)) - from.newest);
    const { raw, posOf } = await read(lo, lo + limit - 1);
    return take(raw, posOf, raw.length - 1, false, encodeCursor({ id: '', pos: 0 }));
  }
  // The cursor's line is at from.pos or below (trims move it towards the tail): search a window below it, wider
  // each time, until the window reaches the tail. Not found there: it was trimmed, and the page starts at the oldest.
  for (let slack = 1024; ; slack *= 8) {
    const lo = Math.max(0, from.pos - slack);
    const { raw, posOf } = await read(lo, from.pos + limit);
    // From the cursor's old position down: the first line with its id is the cursor's.
    let at = -1;
    for (let j = 0; j < raw.length; j++) {
      if (posOf(j) > from.pos) continue;
      if ((JSON.parse(raw[j]!) as { id?: unknown }).id === from.id) {
        at = j;
        break;
      }
    }
    if (at >= 0) return take(raw, posOf, at - 1, false, encodeCursor(from));
    if (lo === 0) {
      // An empty-id cursor (an empty first page) has no line: start at the oldest, no gap.
      return take(raw, posOf, raw.length - 1, from.id !== '', encodeCursor(from));
    }
  }
}
