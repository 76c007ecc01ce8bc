import { Type, type Static } from '@sinclair/typebox';
import { Id } from '../pipelines/schema.js';

const Share = Type.Number({ minimum: 0, maximum: 1 });
const VariantName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' });

export const Variant = Type.Object(
  {
    name: VariantName,
    strategy: Type.String({ minLength: 1, maxLength: 128, description: 'Strategy id (or @uniform).' }),
    weight: Type.Number({ minimum: 0, maximum: 1_000_000, description: 'Relative weight among variants.' }),
  },
  { additionalProperties: false },
);
export type Variant = Static<typeof Variant>;

export const CONDITION_OPS = ['in', 'not_in', 'eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'prefix', 'contains', 'exists'] as const;

export const Condition = Type.Object(
  {
    attribute: Type.String({ minLength: 1, maxLength: 128, description: 'A feature name, or "unitKey".' }),
    op: Type.Union(CONDITION_OPS.map((o) => Type.Literal(o))),
    value: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean()])),
    values: Type.Optional(Type.Array(Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean()]), { maxItems: 1000 })),
    not: Type.Optional(Type.Boolean({ description: 'Invert this condition.' })),
  },
  { additionalProperties: false },
);
export type Condition = Static<typeof Condition>;

export const Targeting = Type.Object(
  {
    all: Type.Optional(Type.Array(Condition, { maxItems: 50, description: 'Every condition must hold (AND).' })),
    any: Type.Optional(Type.Array(Condition, { maxItems: 50, description: 'At least one must hold (OR), when given.' })),
    invert: Type.Optional(Type.Boolean({ description: 'Target the complement of the rule.' })),
  },
  { additionalProperties: false },
);
export type Targeting = Static<typeof Targeting>;

export const Layer = Type.Object(
  {
    id: Id,
    range: Type.Tuple([Share, Share], { description: '[from, to) of the layer hash space this experiment owns.' }),
  },
  { additionalProperties: false },
);
export type Layer = Static<typeof Layer>;

export const GUARDRAIL_METRICS = ['quality', 'cost', 'ceilingHitRate'] as const;
export type GuardrailMetric = (typeof GUARDRAIL_METRICS)[number];

export const Guardrail = Type.Object(
  {
    metric: Type.Union(GUARDRAIL_METRICS.map((m) => Type.Literal(m))),
    agent: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Required for ceilingHitRate.' })),
    maxRegression: Type.Optional(
      Type.Number({ minimum: 0, description: 'Tolerated regression vs control (worse direction). Default 0.' }),
    ),
    relative: Type.Optional(Type.Boolean({ description: 'maxRegression is a share of the control mean. Default false.' })),
    minSamples: Type.Optional(Type.Integer({ minimum: 2, maximum: 10_000_000, description: 'Per arm before judging. Default 50.' })),
  },
  { additionalProperties: false },
);
export type Guardrail = Static<typeof Guardrail>;

export const RampStep = Type.Object(
  {
    share: Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'Share of the coverage exposed at this step.' }),
    minDurationSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 90 * 86_400 })),
    minSamples: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000_000, description: 'Outcomes during this step.' })),
  },
  { additionalProperties: false },
);
export type RampStep = Static<typeof RampStep>;

export const EXPERIMENT_TYPES = ['ab', 'holdout', 'probe'] as const;
export type ExperimentType = (typeof EXPERIMENT_TYPES)[number];

export const ExperimentBody = Type.Object(
  {
    pipeline: Id,
    type: Type.Optional(Type.Union(EXPERIMENT_TYPES.map((t) => Type.Literal(t)), { description: 'ab (default) | holdout | probe.' })),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    variants: Type.Optional(Type.Array(Variant, { minItems: 2, maxItems: 20 })),
    control: Type.Optional(VariantName),
    coverage: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Share of eligible units included. Default 1.' })),
    targeting: Type.Optional(Targeting),
    layer: Type.Optional(Layer),
    seed: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Hash seed. Default: the experiment id.' })),
    guardrails: Type.Optional(Type.Array(Guardrail, { maxItems: 20 })),
    ramp: Type.Optional(Type.Object({ steps: Type.Array(RampStep, { minItems: 1, maxItems: 20 }) }, { additionalProperties: false })),
    alpha: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 0.5, description: 'Error rate of every interval. Default 0.05.' })),
    probe: Type.Optional(
      Type.Object(
        {
          fraction: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, description: 'Share of its usual budget a cut agent keeps.' }),
          agents: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 64 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ExperimentBody = Static<typeof ExperimentBody>;

export const STATUSES = ['draft', 'running', 'paused', 'stopped', 'rolled_back'] as const;
export type Status = (typeof STATUSES)[number];

export interface SrmFlag {
  readonly phase: number;
  /** Always-valid p-value of the sequential test when it flagged. */
  readonly pValue: number;
  readonly flaggedAt: number;
  /** Counts per variant (in `variants` order) when it flagged: units, or outcomes when `basis` is absent or `outcomes`. */
  readonly counts?: readonly number[];
  readonly basis?: 'units' | 'outcomes';
  /** `counts` (of `basis`: absent means outcomes) at the acknowledgement, from which the test restarts. */
  readonly acknowledged?: { readonly by: string; readonly at: number; readonly reason: string; readonly counts: readonly number[]; readonly basis?: 'units' | 'outcomes' };
}

export interface HoldoutPhase {
  readonly phase: number;
  readonly startedAt: number;
  /** What the held-out units get (frozen) and what the exposed units' default is in this phase. */
  readonly held: string;
  readonly exposedDefault: string;
  /** The held-out share in this phase (absent on entries recorded before coverage was: the document's coverage). */
  readonly coverage?: number;
  readonly cause: string;
}

/**
 * The assignment an earlier phase ran with (an ab or probe experiment): its variants (names, strategies, weights) and
 * control, recorded when the next phase began, so that phase is read and analysed with what it served.
 */
export interface EarlierPhase {
  readonly phase: number;
  readonly startedAt?: number;
  readonly endedAt: number;
  readonly variants: readonly Variant[];
  readonly control: string;
}

/** Lifecycle state, kept in the document so every process routes from the same snapshot. */
export interface ExperimentState {
  readonly status: Status;
  /** Bumped when variants, weights or seed change on a started experiment: results are kept apart. */
  readonly phase: number;
  readonly phaseStartedAt?: number;
  readonly startedAt?: number;
  readonly endedAt?: number;
  /** Index into ramp.steps (absent: no ramp, full coverage). */
  readonly rampStep?: number;
  readonly stepStartedAt?: number;
  /** Outcomes of the current phase when the current ramp step began (minSamples counts from here). */
  readonly stepStartSamples?: number;
  readonly rollback?: { readonly reason: string; readonly at: number; readonly by: string; readonly details?: unknown };
  /**
   * The latest sample-ratio-mismatch flag: it holds the ramp until an operator acknowledges it (with a
   * reason); the sequential test then starts afresh on the counts after the acknowledgement.
   */
  readonly srm?: SrmFlag;
  /**
   * Ab and probe experiments: the assignment of each earlier phase, oldest first (at most MAX_PHASES - 1 entries:
   * an experiment has at most MAX_PHASES phases). Absent on documents whose phases began before it was recorded.
   */
  readonly earlierPhases?: readonly EarlierPhase[];
  /** Holdouts: the pipeline default the exposed population gets in the current phase. */
  readonly exposedDefault?: string;
  /** Holdouts: why each phase began (a promote, a default changed elsewhere), oldest first. */
  readonly holdoutPhases?: readonly HoldoutPhase[];
  readonly promoted?: { readonly variant: string; readonly strategy: string; readonly at: number };
}

/** The stored document: the body as given (normalised) plus its state. */
export interface ExperimentDoc extends ExperimentBody {
  /**
   * Which creation of this id the document is: the experiments write sequence of the write that created it. An id
   * deleted and created again gets a new one; decisions record it (`route.generation`), and statistics are kept per
   * generation, so a late outcome of a deleted experiment never counts in its successor. Absent on documents
   * created before generations existed (their statistics keep the layout without one).
   */
  readonly generation?: number;
  readonly type: ExperimentType;
  readonly variants: Variant[];
  readonly control: string;
  readonly coverage: number;
  readonly seed: string;
  readonly hashVersion: number;
  readonly state: ExperimentState;
}

/**
 * The stored experiment document as a schema, for reading it back from Redis (`ExperimentStore.read`). The
 * fields the body gave are checked by the body's schemas; the ones the model derives (variants, control,
 * state, ...) by their shape only. Extra fields are allowed. `StoredExperimentDocIsExperimentDoc` below makes
 * a drift between this schema and `ExperimentDoc` a compile error.
 */
const Counts = Type.Array(Type.Number());
export const StoredExperimentDoc = Type.Object({
  ...ExperimentBody.properties,
  generation: Type.Optional(Type.Number()),
  type: Type.Union(EXPERIMENT_TYPES.map((t) => Type.Literal(t))),
  variants: Type.Array(Type.Object({ name: Type.String(), strategy: Type.String(), weight: Type.Number() })),
  control: Type.String(),
  coverage: Type.Number(),
  seed: Type.String(),
  hashVersion: Type.Number(),
  state: Type.Object({
    status: Type.Union(STATUSES.map((t) => Type.Literal(t))),
    phase: Type.Number(),
    phaseStartedAt: Type.Optional(Type.Number()),
    startedAt: Type.Optional(Type.Number()),
    endedAt: Type.Optional(Type.Number()),
    rampStep: Type.Optional(Type.Number()),
    stepStartedAt: Type.Optional(Type.Number()),
    stepStartSamples: Type.Optional(Type.Number()),
    rollback: Type.Optional(Type.Object({ reason: Type.String(), at: Type.Number(), by: Type.String(), details: Type.Optional(Type.Unknown()) })),
    srm: Type.Optional(
      Type.Object({
        phase: Type.Number(),
        pValue: Type.Number(),
        flaggedAt: Type.Number(),
        counts: Type.Optional(Counts),
        basis: Type.Optional(Type.Union([Type.Literal('units'), Type.Literal('outcomes')])),
        acknowledged: Type.Optional(
          Type.Object({ by: Type.String(), at: Type.Number(), reason: Type.String(), counts: Counts, basis: Type.Optional(Type.Union([Type.Literal('units'), Type.Literal('outcomes')])) }),
        ),
      }),
    ),
    earlierPhases: Type.Optional(
      Type.Array(
        Type.Object({
          phase: Type.Number(),
          startedAt: Type.Optional(Type.Number()),
          endedAt: Type.Number(),
          variants: Type.Array(Type.Object({ name: Type.String(), strategy: Type.String(), weight: Type.Number() })),
          control: Type.String(),
        }),
      ),
    ),
    exposedDefault: Type.Optional(Type.String()),
    holdoutPhases: Type.Optional(
      Type.Array(Type.Object({
          phase: Type.Number(),
          startedAt: Type.Number(),
          held: Type.String(),
          exposedDefault: Type.String(),
          coverage: Type.Optional(Type.Number()),
          cause: Type.String(),
        })),
    ),
    promoted: Type.Optional(Type.Object({ variant: Type.String(), strategy: Type.String(), at: Type.Number() })),
  }),
});
type Assignable<A extends B, B> = A;
export type StoredExperimentDocIsExperimentDoc = Assignable<Static<typeof StoredExperimentDoc>, ExperimentDoc>;

export const ExperimentParams = Type.Object({ id: Id });

export const ExperimentResponse = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  generation: Type.Optional(Type.Integer({ description: 'Which creation of this id it is (a deleted and re-created experiment gets a new one); decisions record it as route.generation.' })),
  pipeline: Type.String(),
  type: Type.String(),
  description: Type.Optional(Type.String()),
  variants: Type.Array(Variant),
  control: Type.String(),
  coverage: Type.Number(),
  effectiveCoverage: Type.Number({ description: 'coverage × the current ramp step share while running or rolled back (rolled-back units keep routing, to control), else 0.' }),
  targeting: Type.Optional(Targeting),
  layer: Type.Optional(Layer),
  seed: Type.String(),
  hashVersion: Type.Integer(),
  guardrails: Type.Array(Guardrail),
  ramp: Type.Optional(Type.Object({ steps: Type.Array(RampStep) })),
  alpha: Type.Number(),
  probe: Type.Optional(Type.Unknown()),
  state: Type.Record(Type.String(), Type.Unknown()),
});

export const PromoteBody = Type.Object(
  {
    variant: VariantName,
    force: Type.Optional(Type.Boolean({ description: 'Promote even though a guardrail rolled the experiment back. Default false.' })),
  },
  { additionalProperties: false },
);
export const AcknowledgeBody = Type.Object(
  { reason: Type.String({ minLength: 1, maxLength: 1000, description: 'Why the mismatch is understood or harmless; kept in the audit trail.' }) },
  { additionalProperties: false },
);
export const ReasonBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 1000 })) }, { additionalProperties: false });
